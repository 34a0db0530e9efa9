// Package transfer holds the gateway's rules for call transfer (RFC 3515
// REFER, RFC 3891 Replaces): which Refer-To a REFER may carry, and where
// a party may send the party it transfers. The proxy applies them to the
// REFERs it forwards between two browsers or two phones, the B2BUA to
// those it relays across a bridged call; both share one [Policy], whose
// counters the binary exports.
//
// The gateway never dials on a REFER's behalf: the referred party (the
// transferee) calls the target itself, through the gateway, which
// authorises that call as any other of that party's. What the policy adds
// is the transferor's side: a party that is not one of our users (a trunk,
// a stranger) cannot use a transfer to have one of our users dial what it
// could not dial itself.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/switchboard/switchboard/sip"
)

// Errors of [ParseReferTo] and [Policy.Check], by reason; every refusal
// wraps one of them.
var (
	// ErrMalformed: no Refer-To, more than one, or one that does not
	// parse.
	ErrMalformed = errors.New("transfer: malformed refer-to")
	// ErrScheme: a Refer-To URI that is not sip, sips or tel.
	ErrScheme = errors.New("transfer: refer-to scheme not supported")
	// ErrHeader: the Refer-To URI embeds a header other than Replaces
	// (?Route=, ?Authorization=...), which the referred party would put
	// in its request: refused rather than passed on blindly.
	ErrHeader = errors.New("transfer: refer-to embeds a header")
	// ErrMethod: the Refer-To URI asks for another method than INVITE
	// (;method=BYE...).
	ErrMethod = errors.New("transfer: refer-to method not allowed")
	// ErrTarget: the transferor is not one of our users and the target is
	// not a user of ours that any caller may reach; or an INVITE with
	// Replaces from such a party reaches a trunk or a foreign party.
	ErrTarget = errors.New("transfer: target not allowed for this transferor")
	// ErrLocalOnly: an INVITE with Replaces from a user of ours kept to
	// our domains names a dialog whose party is outside them.
	ErrLocalOnly = errors.New("transfer: replaced party outside our domains")
)

// ReferTo is a Refer-To that passed ParseReferTo.
type ReferTo struct {
	// Address is the header as received.
	Address sip.Address
	// Replaces is the dialog an attended transfer replaces, when the URI
	// embeds one.
	Replaces *sip.Replaces
}

// ParseReferTo reads and checks the Refer-To of req: exactly one, a sip,
// sips or tel URI, no method but INVITE, and no embedded header but a
// well-formed Replaces.
func ParseReferTo(req *sip.Request) (ReferTo, error) {
	var rt ReferTo
	vs := req.Values("Refer-To")
	if len(vs) != 1 {
		return rt, fmt.Errorf("%w: %d refer-to headers", ErrMalformed, len(vs))
	}
	a, ok, err := req.ReferTo()
	if !ok || err != nil || a.Wildcard {
		return rt, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	rt.Address = a
	u := &a.URI
	switch u.Scheme {
	case "sip", "sips", "tel":
	default:
		return rt, fmt.Errorf("%w: %q", ErrScheme, u.Scheme)
	}
	if m, ok := u.Params.Get("method"); ok && !strings.EqualFold(m, sip.MethodInvite) {
		return rt, fmt.Errorf("%w: %s", ErrMethod, m)
	}
	if u.Headers == "" {
		return rt, nil
	}
	for field := range strings.SplitSeq(u.Headers, "&") {
		name, value, _ := strings.Cut(field, "=")
		name, err := url.PathUnescape(name)
		if err != nil || !strings.EqualFold(strings.TrimSpace(name), "Replaces") || rt.Replaces != nil {
			return rt, fmt.Errorf("%w: %.40q", ErrHeader, name)
		}
		value, err = url.PathUnescape(value)
		if err != nil {
			return rt, fmt.Errorf("%w: replaces: %v", ErrMalformed, err)
		}
		var h sip.Headers
		h.Set("Replaces", value)
		r, _, err := h.Replaces()
		if err != nil || r.ToTag == "" || r.FromTag == "" {
			return rt, fmt.Errorf("%w: replaces %.80q", ErrMalformed, value)
		}
		rt.Replaces = &r
	}
	return rt, nil
}

// Party is the transferor as the gateway knows it.
type Party struct {
	// User is the user of one of our domains the party authenticated as
	// (or registered as, for a callee), "" for anyone else.
	User string
	// Trunk is the trusted trunk the party is, "" for anyone else.
	Trunk string
	// Source is where its REFER came from, for the logs.
	Source sip.Addr
	// LocalOnly says that the party, one of our users, may not reach
	// other domains directly (SWITCHBOARD_LOCAL_ONLY): only our users and
	// trunks, which the dial plan reaches.
	LocalOnly bool
}

// Trusted reports whether the party is one of our users: such a party may
// transfer to anything its peer may dial.
func (p Party) Trusted() bool { return p.User != "" }

// Policy is the gateway's transfer policy and its counters. The zero value
// lets only our users transfer anyone; set Reachable to let trunks and
// strangers transfer to our users. It is safe for concurrent use.
type Policy struct {
	// Reachable reports whether uri names a user of ours that any caller
	// may reach, and that would not be routed out of the gateway (to a
	// trunk, another domain) when one of our users dials it: the only
	// targets that a party which is not one of our users may transfer to.
	// Nil: none.
	Reachable func(ctx context.Context, uri sip.URI) bool
	// Logger receives one line for each refusal; nil discards them.
	Logger *slog.Logger

	passed   atomic.Uint64
	replaced atomic.Uint64
	refused  [numReasons]atomic.Uint64
}

// Reasons of a refusal, as Stats counts them.
const (
	reasonMalformed = iota
	reasonHeader
	reasonMethod
	reasonTarget
	reasonLocalOnly
	numReasons
)

// Check decides on refer, a REFER from transferor: nil when it may go on,
// else the response that refuses it (400, 403 or 416, with the reason in
// its phrase), which the caller sends. Each refusal is logged and counted.
func (p *Policy) Check(ctx context.Context, refer *sip.Request, transferor Party) *sip.Response {
	rt, err := ParseReferTo(refer)
	if err == nil && !transferor.Trusted() && (p.Reachable == nil || !p.Reachable(ctx, rt.Address.URI)) {
		err = fmt.Errorf("%w: %s", ErrTarget, rt.Address.URI.String())
	}
	if err == nil {
		p.passed.Add(1)
		return nil
	}
	code, reason, which := 403, "Forbidden (transfer target not allowed)", reasonTarget
	switch {
	case errors.Is(err, ErrMalformed):
		code, reason, which = 400, "Bad Request (malformed Refer-To)", reasonMalformed
	case errors.Is(err, ErrScheme):
		code, reason, which = 416, "", reasonMalformed
	case errors.Is(err, ErrHeader):
		reason, which = "Forbidden (Refer-To embeds a header)", reasonHeader
	case errors.Is(err, ErrMethod):
		reason, which = "Forbidden (Refer-To method not allowed)", reasonMethod
	}
	p.refused[which].Add(1)
	p.logger().Info("transfer refused", "err", err, "status", code,
		"user", transferor.User, "trunk", transferor.Trunk, "source", transferor.Source.String(),
		"call_id", refer.CallID(), "refer_to", refer.Get("Refer-To"))
	res := sip.NewResponse(refer, code, reason)
	if res.To().Tag() == "" {
		res.SetToTag(sip.NewTag())
	}
	return res
}

// CheckReplaces decides on invite, an INVITE with Replaces from sender
// that names a dialog the gateway knows, whose party across the gateway
// is target: nil when the INVITE may go to it, else the 403 that refuses
// it, which the caller sends. The INVITE reaches a party that is in a call
// already, so a user of ours may be reached by anyone, as any call may
// reach it; a trunk or a foreign party only by one of our users, as for
// any call that leaves the gateway: knowing a dialog's tags must not let a
// stranger or a trunk dial out, nor a user of ours kept to our domains
// (sender.LocalOnly) reach a party outside them that is no trunk. Passes
// and refusals are counted, each refusal logged.
func (p *Policy) CheckReplaces(invite *sip.Request, sender, target Party) *sip.Response {
	switch {
	case target.Trusted(),
		sender.Trusted() && !sender.LocalOnly,
		sender.Trusted() && target.Trunk != "":
		p.replaced.Add(1)
		return nil
	}
	which, err, reason := reasonTarget, ErrTarget, "Forbidden (replaced party not reachable by the caller)"
	if sender.Trusted() {
		which, err, reason = reasonLocalOnly, ErrLocalOnly, "Forbidden (replaced party is outside our domains)"
	}
	p.refused[which].Add(1)
	p.logger().Info("transfer refused", "err", err, "status", 403,
		"user", sender.User, "trunk", sender.Trunk, "source", sender.Source.String(), "local_only", sender.LocalOnly,
		"call_id", invite.CallID(), "replaces", invite.Get("Replaces"), "target_trunk", target.Trunk)
	res := sip.NewResponse(invite, 403, reason)
	if res.To().Tag() == "" {
		res.SetToTag(sip.NewTag())
	}
	return res
}

func (p *Policy) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// Stats are the policy's counters since start.
type Stats struct {
	// Passed counts the REFERs the policy let through.
	Passed uint64
	// Replaced counts the INVITEs with Replaces the gateway routed to the
	// party of a dialog it knows (rewriting the Replaces for a bridged
	// call's other leg); those refused are counted in Refused as target.
	Replaced uint64
	// Refused counts the REFERs refused, by reason: malformed (no, many
	// or an unparsable Refer-To, or an unsupported scheme), header (an
	// embedded header other than Replaces), method (a method other than
	// INVITE), target (a target the transferor may not send its peer to);
	// and the INVITEs with Replaces refused: target (from a trunk or a
	// stranger), local_only (from a user kept to our domains, for a party
	// outside them).
	Refused map[string]uint64
}

// Stats returns the counters.
func (p *Policy) Stats() Stats {
	return Stats{
		Passed:   p.passed.Load(),
		Replaced: p.replaced.Load(),
		Refused: map[string]uint64{
			"malformed":  p.refused[reasonMalformed].Load(),
			"header":     p.refused[reasonHeader].Load(),
			"method":     p.refused[reasonMethod].Load(),
			"target":     p.refused[reasonTarget].Load(),
			"local_only": p.refused[reasonLocalOnly].Load(),
		},
	}
}
