package proxy

import (
	"context"
	"net/netip"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// Target is one place a request may be forwarded to (RFC 3261 §16.5).
type Target struct {
	// URI becomes the branch's Request-URI: a registered Contact, or the
	// Request-URI itself for a foreign domain.
	URI sip.URI
	// Q is the q-value in thousandths (0 to 1000). Targets of equal Q are
	// tried in parallel, higher Q first (§16.6). A location service gives
	// contacts registered without q 1000.
	Q int
	// Path is the Path of the registration (RFC 3327), top first: the
	// header values become the branch's first Route headers.
	Path []string
	// Dest, when valid, is where the branch is sent, with no resolving:
	// the flow a WebSocket or outbound (RFC 5626) binding registered over
	// (sip.Addr.Flow set), or a trunk's address.
	Dest sip.Addr
	// Expires is when the binding lapses; a redirect (302) reports it in
	// the Contact's expires parameter. Zero leaves the parameter out.
	Expires time.Time
	// Peer: the target is reached over a connection that another
	// instance of the gateway's cluster holds, through the first Path
	// entry, a PeerRoute to that instance. That instance delivers the
	// request, and runs the B2BUA of a call that crosses to a browser
	// there; the Bridge sees this.
	Peer bool
	// User is the user of one of our domains whose registration the
	// target is (the proxy sets it for the targets the Locator found), ""
	// for a trunk or a foreign host: the REFERs of that party in the
	// dialog are trusted as that user's (package transfer).
	User string
	// Trunk is the name of the trunk the target is (the Router sets it
	// for a dial rule's target), "" otherwise: a bridged call to it
	// follows the trunk's codec policy.
	Trunk string
}

// BridgedBranch is a branch of a forked INVITE that something other than
// a client transaction runs for the proxy: a back-to-back user agent's
// call to the target (*b2bua.Leg), made by Options.Bridge.
//
// Its responses must be ready to go upstream as they are: built from the
// caller's INVITE, with no Via of the proxy to remove. They are
// provisional ones, then a final one; after a 2xx, its retransmissions
// until the caller's ACK, which reaches the bridge, not the proxy. The
// channel is closed when no more will come. CancelWithReason gives the
// branch up, with the Reason (RFC 3326) for the target's CANCEL, if not
// empty: before an answer the branch ends with a final response (487,
// say); after, nothing happens. It may be called more than once.
//
// A 503 with Retry-After from a bridged branch says that the gateway
// itself is at capacity (its call cap): when it is the best response it
// goes upstream as a 503, where any other 503 becomes a 500.
type BridgedBranch interface {
	Responses() <-chan *sip.Response
	CancelWithReason(reason string)
}

// Locator is the location service as the proxy needs it: the targets of an
// address of record of one of our domains. aor is canonical:
// "sip:user@domain" with scheme sip, no port, no parameters and the host
// in lower case. No targets is not an error.
type Locator interface {
	Lookup(ctx context.Context, aor string) ([]Target, error)
}

// LocatorFunc adapts a function to Locator.
type LocatorFunc func(ctx context.Context, aor string) ([]Target, error)

// Lookup calls f(ctx, aor).
func (f LocatorFunc) Lookup(ctx context.Context, aor string) ([]Target, error) { return f(ctx, aor) }

// Credentials are the accounts the proxy authenticates: the stored digest
// HA1 of user in the proxy's realm for an algorithm ("MD5", "SHA-256" or
// "SHA-512-256"), and whether there is one.
type Credentials interface {
	HA1(user, algorithm string) (ha1 string, ok bool)
}

// TrustedSources names the configured trunks and PBXs that are trusted by
// their source address rather than by digest.
type TrustedSources interface {
	Trusted(src sip.Addr) (trunk string, ok bool)
}

// Throttle slows guessing down, of passwords and of user names, per
// source and per user. Allow is asked before any hashing, and with user ""
// about any caller that is not a trusted trunk; Failure reports a wrong
// password or unknown user, Success good credentials, and Probe an
// anonymous request for an address of ours with no target. The binary
// adapts *accounts.Throttle, which the registrar and the admin API share.
type Throttle interface {
	Allow(ip netip.Addr, user string) (retryAfter time.Duration, ok bool)
	Failure(ip netip.Addr, user string) (blocked bool)
	Success(ip netip.Addr, user string)
	Probe(ip netip.Addr) (blocked bool)
}

// Caller is who sent a request, as the proxy's policy established it.
type Caller struct {
	// User is the authenticated user of one of our domains, or "".
	User string
	// Trunk is the name of the trusted trunk the request came from, or "".
	Trunk string
	// Source is where the request came from.
	Source sip.Addr
	// Peer: another instance of the cluster sent the request on a peer
	// route (Proxy.PeerRoute), having authorised it.
	Peer bool
}

// Anonymous reports a caller that is neither authenticated nor trusted.
func (c Caller) Anonymous() bool { return c.User == "" && c.Trunk == "" && !c.Peer }

// Router is the routing hook of trunks and dial plans. It is asked about
// every out-of-dialog request after the caller was established and before
// the location service: inbound, it maps a DID from a trunk to a local
// user's targets; outbound, it maps a dial string from a local user to a
// trunk's target. handled with no targets answers 404.
//
// The Router decides for whom it routes: a Router that sends anonymous
// callers (Caller.Anonymous) to a trunk makes the gateway a toll-fraud
// relay. The request must be read only.
type Router interface {
	Route(ctx context.Context, req *sip.Request, caller Caller) (targets []Target, handled bool)
}

// RouterFunc adapts a function to Router.
type RouterFunc func(ctx context.Context, req *sip.Request, caller Caller) ([]Target, bool)

// Route calls f(ctx, req, caller).
func (f RouterFunc) Route(ctx context.Context, req *sip.Request, caller Caller) ([]Target, bool) {
	return f(ctx, req, caller)
}

// FlowTokens turn a flow (a connection, with its transport and address)
// into an unforgeable token that fits a SIP URI user part and a parameter
// value, and back (RFC 5626 §5.2).
type FlowTokens interface {
	Encode(flow sip.Addr) string
	Decode(token string) (sip.Addr, error)
}

// Reconnects maps a flow to the one that replaced it: a user agent whose
// connection dropped, and that registered again over a new one with the
// same +sip.instance and reg-id (RFC 5626), is reached over the new one.
// Follow returns flow itself when nothing replaced it.
// *location.Instances implements it.
type Reconnects interface {
	Follow(flow sip.Addr) sip.Addr
}

// HMACTokens are the flow tokens of the transport package, keyed with
// Secret: every gateway instance that must read a token needs the same
// Secret, which must be random and secret (32 bytes): anyone who knows it
// can steer requests into other users' connections.
type HMACTokens struct {
	Secret []byte
}

// Encode returns transport.EncodeFlowToken(t.Secret, flow).
func (t HMACTokens) Encode(flow sip.Addr) string { return transport.EncodeFlowToken(t.Secret, flow) }

// Decode returns transport.DecodeFlowToken(t.Secret, token).
func (t HMACTokens) Decode(token string) (sip.Addr, error) {
	return transport.DecodeFlowToken(t.Secret, token)
}
