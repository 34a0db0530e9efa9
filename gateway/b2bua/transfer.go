package b2bua

import (
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/switchboard/switchboard/gateway/transfer"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// Call transfer across a bridged call (RFC 3515, 3891, 4488, 5589).
//
// The B2BUA does not transfer anyone itself: a REFER from one party is
// relayed to the other, which calls the target through the gateway as it
// would call anyone (authorised as itself), and the NOTIFYs of its refer
// subscription are relayed back. An attended transfer's INVITE with
// Replaces naming one of the B2BUA's legs is sent by the proxy to the
// party across that leg, with the Replaces rewritten to the dialog that
// party knows (B2BUA.Replaces); that party then ends its leg with BYE,
// which ends the call. When a NOTIFY reports that the target answered,
// the transferred call ends with BYE on both legs, whatever the
// transferor does.

// errTooManyRefers refuses a REFER beyond maxRefers.
var errTooManyRefers = errors.New("b2bua: too many transfers in progress")

// maxRefers bounds the refer subscriptions relayed at once in one call: a
// party that keeps REFERing without its peer ever reporting an outcome
// gets 503 beyond it.
const maxRefers = 4

// earlyExpires is the expiry, in seconds, of the subscription state the
// transferor gets with a progress report that claimed to end it.
const earlyExpires = 60

// referSub is a REFER the call relayed, whose NOTIFYs it relays back.
type referSub struct {
	from  *leg   // the transferor's leg, where the NOTIFYs go
	id    uint32 // the CSeq of the transferor's REFER: the id of its NOTIFYs
	quiet bool   // the transferor asked for no subscription (RFC 4488)
	// answered is closed once the transferor has the answer to its
	// REFER: its NOTIFYs wait for it, so that they never overtake the
	// 202 (RFC 3515 lets them, but not every agent copes).
	answered chan struct{}
}

// referKey names a relayed REFER by the leg it was relayed on and its
// CSeq there, the id of the NOTIFYs that come back on that leg.
type referKey struct {
	to   *leg
	cseq uint32
}

// transfers are the refer subscriptions of one call.
type transfers struct {
	mu   sync.Mutex
	subs map[referKey]*referSub
}

func (x *transfers) add(k referKey, s *referSub) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.subs) >= maxRefers {
		return false
	}
	if x.subs == nil {
		x.subs = make(map[referKey]*referSub)
	}
	x.subs[k] = s
	return true
}

func (x *transfers) remove(k referKey) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.subs, k)
}

// find returns the subscription of a NOTIFY received on l: by its id, or
// the one subscription relayed on l when it has none (RFC 3515 §2.4.6
// allows that for the first REFER of a dialog).
func (x *transfers) find(l *leg, id uint32, hasID bool) (referKey, *referSub, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if hasID {
		k := referKey{l, id}
		s, ok := x.subs[k]
		return k, s, ok
	}
	var found referKey
	n := 0
	for k := range x.subs {
		if k.to == l {
			found = k
			n++
		}
	}
	if n != 1 {
		return referKey{}, nil, false
	}
	return found, x.subs[found], true
}

// serveRefer relays a REFER from l's peer (the transferor) to the other
// party (the transferee), once the transfer policy admits it, and answers
// with the transferee's answer: 202, or its refusal. Refer-Sub: false
// (RFC 4488) is honoured whether the transferee honours it or not: the
// NOTIFYs of such a REFER are answered here and not relayed.
func (c *call) serveRefer(l *leg, tx *transaction.ServerTx, req *sip.Request, sent func()) {
	party := transfer.Party{User: l.user, Source: req.Source}
	if res := c.b.transfer.Check(c.ctx, req, party); res != nil {
		c.respond(tx, l.stamp(res))
		return
	}
	other := c.other(l)
	quiet := strings.EqualFold(strings.TrimSpace(req.Get("Refer-Sub")), "false")
	sub := &referSub{from: l, id: req.CSeq().Seq, quiet: quiet, answered: make(chan struct{})}
	defer close(sub.answered)
	var key referKey
	fill := func(out *sip.Request) error {
		for _, h := range []string{"Refer-To", "Referred-By"} {
			out.CopyFrom(&req.Headers, h)
		}
		if quiet {
			out.Set("Refer-Sub", "false")
			out.Set("Supported", "norefersub")
		}
		// Before the REFER leaves: its first NOTIFY may overtake the 202.
		key = referKey{other, out.CSeq().Seq}
		if !c.xfer.add(key, sub) {
			return errTooManyRefers
		}
		c.log.Info("transfer: refer relayed", "from", l.role, "refer_to", req.Get("Refer-To"), "quiet", quiet)
		return nil
	}
	res, err := other.relay(c.ctx, sip.MethodRefer, fill, sent)
	switch {
	case errors.Is(err, errTooManyRefers):
		res := l.reply(req, 503, "Service Unavailable (too many transfers in progress)")
		res.Set("Retry-After", "5")
		c.log.Info("transfer: refused, too many in progress", "leg", l.role, "max", maxRefers)
		c.respond(tx, res)
		return
	case errors.Is(err, errNotBuilt):
		c.respond(tx, l.reply(req, 481, ""))
		return
	}
	if err != nil || !res.IsSuccess() {
		c.xfer.remove(key)
		code, reason := 480, ""
		if err == nil {
			code, reason = referFailure(res)
		}
		c.log.Info("transfer: the other party refused the refer", "status", code, "err", err)
		c.respond(tx, l.reply(req, code, reason))
		return
	}
	ok := l.reply(req, 202, "")
	if quiet {
		ok.Set("Refer-Sub", "false")
	}
	c.respond(tx, ok)
}

// referFailure maps the transferee's refusal of a REFER to the answer the
// transferor gets: a party that takes no REFER at all declines it.
func referFailure(res *sip.Response) (int, string) {
	switch res.StatusCode {
	case 405, 420, 501:
		return 603, "Decline (the other party takes no transfer)"
	}
	return failureFor(res)
}

// serveNotify relays a NOTIFY of a refer subscription from l's peer (the
// transferee) to the transferor, with the id of the transferor's REFER,
// and relays its answer back; one that asked for no subscription gets
// none. A final NOTIFY whose sipfrag says that the target answered ends
// the transferred call: the transferor's leg ends once the target
// answers (RFC 5589 §6).
func (c *call) serveNotify(l *leg, tx *transaction.ServerTx, req *sip.Request, sent func()) {
	ev, ok, err := req.Event()
	if !ok || err != nil || !strings.EqualFold(ev.Value, "refer") {
		c.respond(tx, l.reply(req, 489, ""))
		return
	}
	var id uint64
	idText, hasID := ev.Params.Get("id")
	if hasID {
		if id, err = strconv.ParseUint(idText, 10, 32); err != nil {
			c.respond(tx, l.reply(req, 400, "Bad Request (malformed Event id)"))
			return
		}
	}
	key, sub, found := c.xfer.find(l, uint32(id), hasID)
	if !found {
		c.respond(tx, l.reply(req, 481, "Subscription Does Not Exist"))
		return
	}
	st, _, _ := req.SubscriptionState()
	terminated := strings.EqualFold(st.Value, "terminated")
	status := sipfragStatus(req)
	// SIP.js (0.21) ends the subscription with each NOTIFY, the one of
	// its new call's 180 too, and still sends the final one. Taken at its
	// word, the final NOTIFY would get 481 and the transferred call would
	// never end: a progress report keeps the subscription, and reaches
	// the transferor as active. maxRefers bounds what a transferee that
	// never reports an outcome leaves behind.
	early := terminated && status >= 100 && status < 200
	if early {
		terminated = false
	}
	if terminated {
		c.xfer.remove(key)
	}
	c.log.Info("transfer: progress", "status", status, "terminated", terminated, "relayed", !sub.quiet)
	if sub.quiet {
		c.respond(tx, l.reply(req, 200, ""))
	} else {
		select {
		case <-sub.answered:
		case <-c.ctx.Done():
		}
		code := c.relayNotify(sub, req, early, sent)
		if (code == 481 || code == 489) && !terminated {
			// The transferor dropped the subscription (RFC 5057 §5.1:
			// a 481 ends that usage, not the call): relay no more.
			c.xfer.remove(key)
			c.log.Info("transfer: the transferor ended the subscription", "status", code)
		}
		c.respond(tx, l.reply(req, code, ""))
	}
	if terminated && status >= 200 && status < 300 {
		c.log.Info("transfer: the target answered, the transferred call ends")
		c.hangup(ErrTransferred, nil)
	}
}

// relayNotify sends req's news to the transferor of sub and returns the
// status to answer the transferee with; sent is called once it left.
// active says that the
// subscription goes on whatever req says (a progress report that claimed
// to end it).
func (c *call) relayNotify(sub *referSub, req *sip.Request, active bool, sent func()) int {
	fill := func(out *sip.Request) error {
		out.Set("Event", "refer;id="+strconv.FormatUint(uint64(sub.id), 10))
		if active {
			out.Set("Subscription-State", "active;expires="+strconv.Itoa(earlyExpires))
		} else {
			out.CopyFrom(&req.Headers, "Subscription-State")
		}
		if len(req.Body) > 0 {
			out.SetBody(req.Body, req.ContentType())
		}
		return nil
	}
	res, err := sub.from.relay(c.ctx, sip.MethodNotify, fill, sent)
	switch {
	case errors.Is(err, errNotBuilt):
		return 481
	case err != nil:
		return 480
	case res.IsSuccess():
		return 200
	case res.StatusCode == 481 || res.StatusCode == 489:
		return res.StatusCode // the transferor dropped the subscription
	}
	code, _ := failureFor(res)
	return code
}

// sipfragStatus returns the status code of a message/sipfrag body
// ("SIP/2.0 200 OK"), 0 when there is none.
func sipfragStatus(req *sip.Request) int {
	if !strings.EqualFold(mediaType(req.ContentType()), "message/sipfrag") {
		return 0
	}
	line, _, _ := strings.Cut(string(req.Body), "\n")
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return 0
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 100 || code > 699 {
		return 0
	}
	return code
}

// ReplacesTarget is where an INVITE with Replaces that names one of the
// B2BUA's legs must go: to the party across the call, which knows its own
// dialog with the gateway and replaces it.
type ReplacesTarget struct {
	// URI is the party's remote target (its latest Contact); Dst where
	// the leg's requests go; Route the leg's route set.
	URI   sip.URI
	Dst   sip.Addr
	Route []sip.Address
	// WebRTC says the party is a browser.
	WebRTC bool
	// User is the user of ours the party is, "" for a trunk or stranger.
	User string
	// Replaces is the Replaces header value naming the party's dialog
	// with the gateway as the party knows it (RFC 3891 §3: to-tag is the
	// party's own tag).
	Replaces string
}

// Replaces finds the leg of an answered call that r, the Replaces header
// of an INVITE outside a dialog, names as its sender knows it, and
// returns the other leg's party: the one the INVITE must reach. The tags
// are matched either way round, as agents differ.
func (b *B2BUA) Replaces(r sip.Replaces) (ReplacesTarget, bool) {
	b.mu.Lock()
	l, peer := b.legs[legKey{r.CallID, r.ToTag}], r.FromTag
	if l == nil {
		l, peer = b.legs[legKey{r.CallID, r.FromTag}], r.ToTag
	}
	b.mu.Unlock()
	if l == nil {
		return ReplacesTarget{}, false
	}
	c := l.c
	c.mu.Lock()
	answered := c.state == stateAnswered
	c.mu.Unlock()
	d, o := l.dialog(), c.other(l)
	od := o.dialog()
	if !answered || d == nil || od == nil || d.ID().RemoteTag != peer || od.State() != dialog.Confirmed {
		return ReplacesTarget{}, false
	}
	id := od.ID()
	c.log.Info("transfer: an invite replaces a leg of the call", "leg", l.role)
	return ReplacesTarget{
		URI:      od.RemoteTarget(),
		Dst:      o.dst,
		Route:    od.RouteSet(),
		WebRTC:   o.web,
		User:     o.user,
		Replaces: id.CallID + ";to-tag=" + id.RemoteTag + ";from-tag=" + id.LocalTag,
	}, true
}
