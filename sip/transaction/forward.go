package transaction

import "context"

// A proxy forwards a non-INVITE request in a client transaction of its own
// while the caller's client transaction waits for the answer. RFC 3261
// gives both the same Timer F, 64*T1: when the next hop never answers, the
// proxy's 408 leaves just as the caller gives up, so the caller never
// learns what happened (RFC 4321 §1.4, "408 for non-INVITE is not
// useful"). RFC 4320 §4.2 takes the consequence and forbids that late 408;
// this package instead ends the proxy's transaction early enough for its
// 408 to arrive while the caller still waits, which is the same rule's aim
// (no response after the caller's transaction is gone) with an answer
// the caller can use.
//
// How early: the caller's Timer F runs from its first transmission. The
// proxy sees the request up to 7*T1 later when the first three copies are
// lost (retransmitted at T1, 2*T1, 4*T1), and a lost 408 is sent again
// only when the next copy of the request arrives, up to T2 later. With
// the defaults that is 3.5 s + 4 s, so 48*T1 (24 s) leaves 8 s of the
// caller's 32 s for both, and for the round trip. A next hop that is alive
// answers a non-INVITE at once (RFC 4320 §2.1: or with a 100 after T2),
// and has had some eight retransmissions by then.

// DefaultForwardTimerF is Config.ForwardTimerF with the default T1: 48*T1.
const DefaultForwardTimerF = 48 * DefaultT1

type forwardingKey struct{}

// Forwarding returns a copy of ctx which, given to Layer.Request, starts a
// client transaction that forwards a request on behalf of an upstream
// client transaction that is itself waiting: a proxy's (RFC 3261 §16.6).
// For a non-INVITE request, such a transaction times out after
// Config.ForwardTimerF rather than Timer F, so that the 408 it delivers
// can still be sent upstream in time. An INVITE is unchanged: its caller
// stops Timer B at the proxy's 100 Trying.
func Forwarding(ctx context.Context) context.Context {
	return context.WithValue(ctx, forwardingKey{}, true)
}

func isForwarding(ctx context.Context) bool {
	v, _ := ctx.Value(forwardingKey{}).(bool)
	return v
}
