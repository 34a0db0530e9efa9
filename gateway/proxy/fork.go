package proxy

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// reasonCompletedElsewhere is the Reason of the CANCELs sent when another
// branch answered (RFC 3326), so that phones do not show a missed call.
const reasonCompletedElsewhere = `SIP;cause=200;text="Call completed elsewhere"`

// call is the response context of one forwarded request (§16.7). Its state
// belongs to the goroutine that runs run: the relays of the branches and
// the timers only post events to it.
type call struct {
	p  *Proxy
	tx *transaction.ServerTx
	// req is the request as received, shared with the transaction layer;
	// the call builds its own responses from it. fwd is the request to
	// forward: routes pre-processed and credentials consumed, req itself
	// when it needed no change. Both are read only, but that the only
	// branch of a call takes fwd as its request when fwdFree (fwd is the
	// proxy's own copy, and no other branch will be made from it).
	req     *sip.Request
	fwd     *sip.Request
	fwdFree bool
	hash    string // loop-detection hash
	invite  bool
	// bridging: an initial INVITE, whose targets Options.Bridge may take.
	bridging bool
	inTok    string // flow token of the source, "" when it is no connection
	fromPeer bool   // sent by another instance of the cluster (Caller.Peer)

	// rr: an initial request that may create a dialog (createsDialog).
	// The proxy record-routes it with rrStamp and keeps its dialog under
	// key once a branch is forwarded (opened); confirmed once a 2xx came
	// through.
	rr        bool
	key       dialogKey
	rrStamp   string
	opened    bool
	confirmed bool
	// routed is the dialog check of a request within one of our dialogs,
	// nil for others: its 2xx may refresh a target or end the dialog.
	routed *routing

	groups   [][]Target // targets not tried yet, by decreasing q
	branches []*branch
	finals   []*sip.Response // final responses so far, ready to go upstream
	// busy are the finals that are a bridged branch's 503 with
	// Retry-After: the gateway itself at capacity, which stays a 503.
	busy []*sip.Response

	finalSent bool // a final response went upstream
	noMore    bool // start no more branches: 2xx, 6xx or CANCEL
	abandoned bool // the server transaction ended before its final response
	// sent, when set, is called once the first branches were sent: the
	// next request of the dialog may go (see order).
	sent func()

	// ctx is the request's, as run got it.
	ctx context.Context
	// caller is who sent the request, as the proxy established it.
	caller Caller

	// One source of responses (a client transaction or a bridged branch)
	// at a time is read by the loop itself, the others through relay
	// goroutines: most requests have a single branch and need no
	// goroutine of their own.
	direct   *branch
	directCt *transaction.ClientTx // nil for a bridged branch
	directCh <-chan *sip.Response

	events chan event
	stop   chan struct{}
	relays sync.WaitGroup

	start time.Time
}

// branch is one target of the request: a client transaction, or several
// in turn when the target's addresses fail over (RFC 3263); or a bridged
// branch, which has no client transaction and no address of its own.
type branch struct {
	target  Target
	base    *sip.Request // the request for the target, without Via and Record-Route
	addrs   []sip.Addr
	next    int // index of the address to try next
	ct      *transaction.ClientTx
	dst     sip.Addr
	bridged BridgedBranch // set when Options.Bridge took the target

	heard    bool // a provisional response arrived
	final    bool // the branch's final response is settled
	closed   bool // nothing more will come from the branch
	canceled bool // a CANCEL was asked for
	timedOut bool // Timer C fired

	timer clock.Timer // Timer C, or the wait for a canceled branch
	gen   uint64      // changes whenever timer is re-armed
}

type eventKind uint8

const (
	evResponse eventKind = iota
	evClosed             // the client transaction delivers nothing more
	evTimerC
	evCancelTimeout
)

type event struct {
	kind eventKind
	b    *branch
	// ct is the client transaction of evResponse and evClosed: the
	// branch's current one unless the branch failed over since. A bridged
	// branch has a single source, and nil here as in b.ct.
	ct  *transaction.ClientTx
	res *sip.Response // evResponse
	gen uint64        // timers
}

func newCall(p *Proxy, tx *transaction.ServerTx, req, r *sip.Request, hash string) *call {
	c := &call{
		p:      p,
		tx:     tx,
		req:    req,
		fwd:    r,
		hash:   hash,
		invite: r.Method == sip.MethodInvite,
		events: make(chan event, 4),
		stop:   make(chan struct{}),
		start:  p.clk.Now(),
	}
	if r.Source.Flow != 0 {
		c.inTok = p.tokens.Encode(r.Source)
	}
	if r.To().Tag() == "" && createsDialog(r.Method) {
		c.rr = true
		c.key = dialogKey{r.CallID(), r.From().Tag()}
		c.rrStamp = p.stamp(toCaller, c.key.callID, c.key.callerTag, "")
	}
	return c
}

// createsDialog reports the methods whose initial request may create a
// dialog, and so get the proxy's Record-Route (RFC 3261, 3515, 6665):
// other requests have no use for one.
func createsDialog(method string) bool {
	switch method {
	case sip.MethodInvite, sip.MethodSubscribe, sip.MethodRefer, sip.MethodNotify:
		return true
	}
	return false
}

// open puts the dialog the call's initial request may create in the
// proxy's table, reporting false when the table has no room.
func (c *call) open() bool {
	now := c.p.clk.Now()
	caller := callerSide(c.req, c.caller.User)
	if c.fromPeer {
		caller.flow = sip.Addr{}
	}
	if err := c.p.dialogs.open(c.key, caller, now, now.Add(c.earlyLifetime())); err != nil {
		return false
	}
	c.opened = true
	return true
}

// unopen forgets the dialog of an initial request that no 2xx confirmed:
// before the caller hears the final answer, so that whatever the caller
// sends next already meets a table without it.
func (c *call) unopen() {
	if c.opened && !c.confirmed {
		c.p.dialogs.failed(c.key)
	}
	c.opened = false
}

// inDialog marks the call as the forwarding of a request that the dialog
// check of rt admitted.
func (c *call) inDialog(rt *routing) {
	r := *rt
	c.routed = &r
}

// run forwards the request to targets and serves the response context
// until the request's fate is settled: the final response sent and, for an
// INVITE, every branch over, so that every 2xx is forwarded.
func (c *call) run(ctx context.Context, targets []Target) {
	c.ctx = ctx
	defer c.shutdown()
	c.groups = groupByQ(targets, c.p.maxTargets)
	c.settle(ctx)
	if c.sent != nil {
		c.sent()
	}
	canceled, done := c.tx.Canceled(), c.tx.Done()
	for !c.finished() {
		select {
		case res, ok := <-c.directCh:
			ev := event{kind: evResponse, b: c.direct, ct: c.directCt, res: res}
			if !ok {
				ev.kind, c.directCh = evClosed, nil
			}
			c.handle(ctx, ev)
		case ev := <-c.events:
			c.handle(ctx, ev)
		case <-canceled:
			canceled = nil
			c.onCancel()
		case <-done:
			done = nil
			if !c.finalSent {
				// The caller is gone (transport error, shutdown).
				c.cancelAll("")
				c.abandoned = true
			}
		}
	}
}

// finished reports whether the loop has nothing left to do: the final
// response went upstream, and every branch has settled, or may be left to
// its client transaction. A branch the response context has no more
// decisions about (its final response is in, or no branch may answer
// any more: a 2xx went up, a 6xx came, the caller canceled) is released
// (ClientTx.Release): its transaction acknowledges a non-2xx itself, and
// a later 2xx comes to ForwardResponse, which forwards it statelessly as
// every 2xx must be (RFC 6026), so that an answered call holds no
// goroutine for Timer M. A bridged branch is waited for until it closes:
// its responses come only through the loop.
func (c *call) finished() bool {
	if !c.finalSent {
		return c.abandoned
	}
	if !c.invite {
		return true
	}
	for _, b := range c.branches {
		switch {
		case b.bridged != nil:
			if !b.closed {
				return false
			}
		case !b.final && !c.noMore:
			return false
		}
	}
	return true
}

// shutdown stops the timers and the relays, waits for the relays and
// releases the client transactions.
func (c *call) shutdown() {
	c.unopen()
	close(c.stop)
	for _, b := range c.branches {
		if b.timer != nil {
			b.timer.Stop()
		}
	}
	c.relays.Wait()
	for _, b := range c.branches {
		if b.ct != nil {
			b.ct.Release()
		}
	}
}

// post hands an event to the loop, unless it has ended.
func (c *call) post(ev event) bool {
	select {
	case c.events <- ev:
		return true
	case <-c.stop:
		return false
	}
}

// watch has the loop read ch, the responses of b from ct (nil for a
// bridged branch): itself when it reads no other, else through a relay.
func (c *call) watch(b *branch, ct *transaction.ClientTx, ch <-chan *sip.Response) {
	if c.directCh == nil {
		c.direct, c.directCt, c.directCh = b, ct, ch
		return
	}
	c.relays.Add(1)
	go c.relay(b, ct, ch)
}

// relay passes the responses of one client transaction, or of a bridged
// branch, to the loop.
func (c *call) relay(b *branch, ct *transaction.ClientTx, ch <-chan *sip.Response) {
	defer c.relays.Done()
	for {
		select {
		case res, ok := <-ch:
			if !ok {
				c.post(event{kind: evClosed, b: b, ct: ct})
				return
			}
			if !c.post(event{kind: evResponse, b: b, ct: ct, res: res}) {
				return
			}
		case <-c.stop:
			return
		}
	}
}

// groupByQ orders targets by decreasing q, keeps the first max, and groups
// those of equal q: a group is forked in parallel, groups in sequence.
func groupByQ(targets []Target, max int) [][]Target {
	if len(targets) == 1 && max >= 1 {
		// Most requests have one target (an in-dialog request always):
		// nothing to order, and no copy of a Target (about 200 bytes).
		return [][]Target{targets}
	}
	ts := slices.Clone(targets)
	slices.SortStableFunc(ts, func(a, b Target) int { return cmp.Compare(b.Q, a.Q) })
	if len(ts) > max {
		ts = ts[:max]
	}
	var groups [][]Target
	for i := 0; i < len(ts); {
		j := i + 1
		for j < len(ts) && ts[j].Q == ts[i].Q {
			j++
		}
		groups = append(groups, ts[i:j])
		i = j
	}
	return groups
}

// settle moves the context on when no branch is pending: to the next
// group of targets, or to the best final response (§16.7 step 6).
func (c *call) settle(ctx context.Context) {
	for !c.finalSent {
		if c.pending() {
			return
		}
		if c.noMore || len(c.groups) == 0 {
			c.sendBest()
			return
		}
		g := c.groups[0]
		c.groups = c.groups[1:]
		for _, t := range g {
			c.launch(ctx, t)
		}
	}
}

func (c *call) pending() bool {
	for _, b := range c.branches {
		if !b.final {
			return true
		}
	}
	return false
}

// launch starts a branch for t (§16.6 steps 1-9), or has Options.Bridge
// run it.
func (c *call) launch(ctx context.Context, t Target) {
	b := &branch{target: t}
	c.branches = append(c.branches, b)
	if c.bridging {
		if br, ok := c.p.bridge(ctx, c.fwd, c.caller, t); ok {
			b.bridged = br
			c.arm(b, c.p.timerC, evTimerC)
			c.watch(b, nil, br.Responses())
			return
		}
	}
	base := c.fwd
	if c.fwdFree {
		c.fwdFree = false // taken
	} else {
		base = base.Clone()
	}
	if t.URI.Scheme != "" {
		base.URI = t.URI
	}
	mf, ok := base.MaxForwards()
	if !ok {
		mf = 71 // absent: forward with the default of 70 (§16.6 step 3)
	}
	base.Set("Max-Forwards", strconv.Itoa(mf-1))
	dest := t.Dest
	if len(t.Path) > 0 {
		// Path (RFC 3327) becomes the first Routes. A Path entry of our
		// own (an edge registrar's, with a flow token) is ours to follow.
		for i := len(t.Path) - 1; i >= 0; i-- {
			base.Prepend("Route", t.Path[i])
		}
		var rt routing
		if err := c.p.popOurRoutes(base, &rt); err != nil {
			c.p.log.Debug("proxy: target path", "call_id", c.req.CallID(), "uri", t.URI.String(), "err", err)
			c.fail(b, 500)
			return
		}
		if !dest.IsValid() {
			dest = rt.flow
		}
	}
	b.base = base
	if dest.IsValid() {
		b.addrs = []sip.Addr{dest}
	} else {
		hop, err := nextHop(base)
		if err == nil {
			b.addrs, err = c.p.resolver.Resolve(ctx, hop)
		}
		if err != nil || len(b.addrs) == 0 {
			c.p.log.Debug("proxy: no address for target", "call_id", c.req.CallID(), "uri", hop.String(), "err", err)
			c.fail(b, 503)
			return
		}
	}
	if !c.attempt(ctx, b) {
		c.fail(b, 503)
	}
}

// attempt sends the branch's request to its next address, reporting
// whether a client transaction started.
func (c *call) attempt(ctx context.Context, b *branch) bool {
	for b.next < len(b.addrs) {
		dst := b.addrs[b.next]
		b.next++
		req := b.base
		if b.next < len(b.addrs) {
			req = req.Clone() // the base serves the next address too
		}
		if c.rr {
			c.p.recordRoute(req, dst, c.rrStamp, c.inTok)
		}
		req.PrependVia(c.p.via(dst, newBranch(c.hash), c.inTok))
		if c.invite {
			// Armed before the INVITE leaves: its event waits for this
			// step to end anyway, and nothing can answer before it is set.
			c.arm(b, c.p.timerC, evTimerC)
		}
		// Forwarding: a non-INVITE times out while the caller still waits.
		ct, err := c.p.txs.Request(transaction.Forwarding(ctx), req, dst)
		if err != nil {
			c.stopTimer(b)
			c.p.log.Debug("proxy: starting client transaction", "call_id", c.req.CallID(), "dst", dst, "err", err)
			continue
		}
		b.ct, b.dst, b.heard = ct, dst, false
		c.watch(b, ct, ct.Responses())
		return true
	}
	return false
}

// fail settles a branch that could not be sent with a response of the
// proxy's own.
func (c *call) fail(b *branch, code int) {
	b.final, b.closed = true, true
	c.finals = append(c.finals, c.synth(code))
}

// synth builds a final response of the proxy's own, as if from a branch.
func (c *call) synth(code int) *sip.Response {
	res := sip.NewResponse(c.req, code, "")
	res.SetToTag(sip.NewTag())
	return res
}

func (c *call) handle(ctx context.Context, ev event) {
	b := ev.b
	switch ev.kind {
	case evResponse:
		if ev.ct != b.ct {
			// An earlier address of the branch: it ended with the failure
			// that moved the branch on, but a 2xx is always forwarded.
			if c.invite && ev.res.IsSuccess() {
				c.forward2xx(ctx, c.upstream(b, ev.res))
			}
			return
		}
		c.onResponse(ctx, b, ev.res)
	case evClosed:
		if ev.ct != b.ct {
			return
		}
		b.closed = true
		if !b.final {
			// Only a closing layer ends a transaction without a final
			// response; the server transaction is ending too.
			b.final = true
			c.finals = append(c.finals, c.synth(500))
			c.settle(ctx)
		}
	case evTimerC:
		if ev.gen == b.gen && !b.final {
			c.onTimerC(ctx, b)
		}
	case evCancelTimeout:
		if ev.gen == b.gen && !b.final {
			// A canceled branch that never answers is given up (§9.1).
			b.final, b.closed = true, true
			c.finals = append(c.finals, c.synth(408))
			c.settle(ctx)
		}
	}
}

// upstream returns the response to forward for res, a response of b:
// res itself without the proxy's Via (§16.7 step 3), since a client
// transaction reads a response no more once it delivered it; a copy for a
// bridged branch, whose responses have no Via of ours (they were made for
// the caller) and are the B2BUA's. A response that establishes an early
// or confirmed dialog with a callee has its Record-Route rewritten for the
// caller, and the callee's side recorded.
func (c *call) upstream(b *branch, res *sip.Response) *sip.Response {
	if b.bridged != nil {
		return res.Clone()
	}
	up := res
	up.PopVia()
	if c.opened && res.StatusCode > 100 && res.StatusCode < 300 && up.To().Tag() != "" {
		c.answered(b, up)
	}
	return up
}

// answered records the callee that sent up, a response with a To tag to
// the call's initial request, and rewrites up's Record-Route for the
// caller.
func (c *call) answered(b *branch, up *sip.Response) {
	var callee sip.Addr
	if b.dst.Flow != 0 {
		callee = b.dst
	}
	next, ok := c.p.rewriteRecordRoute(up, c.req.Source.Transport, callee)
	if !ok {
		return // the callee kept no route through us
	}
	confirmed := up.StatusCode >= 200
	now := c.p.clk.Now()
	c.p.dialogs.answered(c.key, up.To().Tag(), side{target: contactOf(&up.Headers), flow: callee, route: hop(next), user: b.target.User},
		confirmed, now, now.Add(c.earlyLifetime()))
	c.confirmed = c.confirmed || confirmed
}

// earlyLifetime is how long an early dialog is kept past its last
// provisional response: Timer C, then the wait for a canceled branch.
func (c *call) earlyLifetime() time.Duration { return c.p.timerC + c.p.cancelTimeout }

// callerSide is the caller's side of the dialog an initial request starts:
// its Contact, its connection, the Record-Route of the proxy before us,
// and the user of ours it authenticated as.
func callerSide(r *sip.Request, user string) side {
	s := side{target: contactOf(&r.Headers), user: user}
	if r.Source.Flow != 0 {
		s.flow = r.Source
	}
	if rrs, err := r.RecordRoutes(); err == nil && len(rrs) > 0 {
		s.route = hop(rrs[0].URI)
	}
	return s
}

// contactOf returns the URI of the first Contact, or a zero URI.
func contactOf(h *sip.Headers) sip.URI {
	if cs, err := h.Contacts(); err == nil && len(cs) > 0 {
		return cs[0].URI
	}
	return sip.URI{}
}

// refreshed notes what a 2xx to a request within one of our dialogs
// changes: the remote targets of both sides after a target refresh
// (RFC 3261 §12.2, RFC 3311, RFC 6665), the end of the dialog after a BYE.
func (c *call) refreshed(up *sip.Response) {
	rt := c.routed
	switch c.req.Method {
	case sip.MethodInvite, sip.MethodUpdate, sip.MethodSubscribe, sip.MethodNotify:
		fromCaller := rt.dir == toCallee
		if t := contactOf(&c.req.Headers); t.Scheme != "" {
			c.p.dialogs.refreshed(rt.dialog, rt.calleeTag, fromCaller, t)
		}
		if t := contactOf(&up.Headers); t.Scheme != "" {
			c.p.dialogs.refreshed(rt.dialog, rt.calleeTag, !fromCaller, t)
		}
	case sip.MethodBye:
		c.p.dialogs.ending(rt.dialog, c.p.clk.Now().Add(c.p.cancelTimeout))
	}
}

// onResponse processes a response of a branch's current transaction
// (§16.7 steps 2-10).
func (c *call) onResponse(ctx context.Context, b *branch, res *sip.Response) {
	code := res.StatusCode
	switch {
	case code < 200:
		b.heard = true
		if c.invite && code > 100 && !b.final && !b.canceled {
			c.arm(b, c.p.timerC, evTimerC) // §16.7 step 2
		}
		if code > 100 && !c.finalSent {
			c.p.respond(c.tx, c.upstream(b, res))
		}
		return
	case code < 300:
		c.stopTimer(b)
		b.final = true
		up := c.upstream(b, res)
		if c.routed != nil {
			c.refreshed(up)
		}
		if c.invite {
			first := !c.finalSent
			if first {
				c.finalSent, c.noMore = true, true
				c.settled(code)
			}
			c.forward2xx(ctx, up)
			if first {
				c.cancelAll(reasonCompletedElsewhere)
			}
			return
		}
		if !c.finalSent {
			c.finalSent = true
			c.settled(code)
			c.p.respond(c.tx, up)
		}
		return
	}
	if b.final {
		return // settled already, by Timer C
	}
	c.stopTimer(b)
	if c.failover(ctx, b, res) {
		return
	}
	b.final = true
	up := c.upstream(b, res)
	switch {
	case b.timedOut && code == 487:
		// Canceled by Timer C, not by the caller: the caller timed out.
		up.StatusCode, up.Reason = 408, sip.StatusText(408)
	case code == 503 && !res.Source.IsValid() && b.dst.Flow != 0:
		// The connection of a flow target is gone (RFC 5626 §5.3).
		up.StatusCode, up.Reason = 430, sip.StatusText(430)
	}
	c.finals = append(c.finals, up)
	if code == 503 && b.bridged != nil && up.Has("Retry-After") {
		c.busy = append(c.busy, up)
	}
	if code >= 600 && !c.noMore {
		c.noMore = true // §16.7 step 5
		c.cancelAll("")
	}
	c.settle(ctx)
}

// failover tries the branch's next address after a transport error, a
// timeout or a 503 (RFC 3263 §4.3), reporting whether it did.
func (c *call) failover(ctx context.Context, b *branch, res *sip.Response) bool {
	if c.noMore || b.canceled || b.next >= len(b.addrs) {
		return false
	}
	synthesized := !res.Source.IsValid()
	if res.StatusCode != 503 && !(synthesized && res.StatusCode == 408) {
		return false
	}
	return c.attempt(ctx, b)
}

// forward2xx forwards a 2xx to an INVITE: through the server transaction
// while it takes it, else statelessly to the caller (§16.7 step 9, RFC
// 6026), since every 2xx must reach the caller.
func (c *call) forward2xx(ctx context.Context, up *sip.Response) {
	if err := c.tx.Respond(up); err == nil {
		return
	}
	// Every 2xx reaches the caller, even after the request's context
	// ended with its server transaction.
	if err := c.p.sender.Send(context.WithoutCancel(ctx), up, c.req.Source); err != nil {
		c.p.log.Debug("proxy: forwarding 2xx", "call_id", c.req.CallID(), "err", err)
	}
}

// onCancel propagates the caller's CANCEL (§16.10): every pending branch
// is canceled, and the caller gets 487 at once.
func (c *call) onCancel() {
	if c.finalSent {
		return
	}
	c.noMore = true
	c.cancelAll("")
	c.finalSent = true
	c.settled(487)
	res := sip.NewResponse(c.req, 487, "")
	// The To tag of the CANCEL's 200 (RFC 3261 §16.10).
	if tag := c.tx.ToTag(); tag != "" {
		res.SetToTag(tag)
	} else {
		res.SetToTag(sip.NewTag())
	}
	c.p.respond(c.tx, res)
}

// onTimerC handles Timer C (§16.8): cancel a branch that sent a provisional
// response, or treat a silent one as having answered 408.
func (c *call) onTimerC(ctx context.Context, b *branch) {
	b.timedOut = true
	if b.heard {
		c.cancel(b, "")
		return
	}
	b.final = true
	c.finals = append(c.finals, c.synth(408))
	switch {
	case b.bridged != nil:
		b.canceled = true
		b.bridged.CancelWithReason("")
	case b.ct != nil:
		b.canceled = true
		b.ct.Cancel() // sent if it ever answers provisionally
	}
	c.settle(ctx)
}

// cancelAll cancels every pending INVITE branch (§16.7 step 10).
func (c *call) cancelAll(reason string) {
	if !c.invite {
		return
	}
	for _, b := range c.branches {
		if !b.final && !b.canceled {
			c.cancel(b, reason)
		}
	}
}

// cancel sends a CANCEL for a branch (§9.1), with a Reason header when one
// is given; the client transaction sends it as soon as it may, and a
// bridged branch has the B2BUA send its own. The branch is given up when
// its final response does not follow within CancelTimeout.
func (c *call) cancel(b *branch, reason string) {
	switch {
	case b.bridged != nil:
		b.bridged.CancelWithReason(reason)
	case b.ct != nil:
		if err := b.ct.CancelWithReason(reason); err != nil {
			c.p.log.Debug("proxy: canceling branch", "call_id", c.req.CallID(), "err", err)
		}
	default:
		return
	}
	b.canceled = true
	c.arm(b, c.p.cancelTimeout, evCancelTimeout)
}

// arm (re)starts the branch's timer.
func (c *call) arm(b *branch, d time.Duration, kind eventKind) {
	c.stopTimer(b)
	g := b.gen
	b.timer = c.p.clk.AfterFunc(d, func() { c.post(event{kind: kind, b: b, gen: g}) })
}

func (c *call) stopTimer(b *branch) {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.gen++
}

// sendBest sends the best final response of the context upstream (§16.7
// steps 6 and 7).
func (c *call) sendBest() {
	c.finalSent = true
	res := bestResponse(c.finals, c.busy)
	if res == nil {
		res = c.synth(500) // no branch at all; New targets never leave it so
	}
	c.settled(res.StatusCode)
	c.unopen()
	c.p.respond(c.tx, res)
}

// settled logs the outcome of the request, once its final response is
// chosen: an operator's line per call attempt, and a debug line for
// other requests.
func (c *call) settled(code int) {
	level := slog.LevelDebug
	if c.invite {
		level = slog.LevelInfo
	}
	ctx := c.ctx
	if !c.p.log.Enabled(ctx, level) {
		return // no work on the hot path of requests nobody logs
	}
	from, to := c.req.From(), c.req.To()
	c.p.log.Log(ctx, level, "proxy: "+strings.ToLower(c.req.Method)+" settled", "call_id", c.req.CallID(),
		"status", code, "from", from.URI.String(), "to", to.URI.String(),
		"branches", len(c.branches), "after", c.p.clk.Now().Sub(c.start), "source", c.req.Source.String())
}

// bestResponse chooses among final responses (§16.7 step 6): the first
// 6xx if any; otherwise the lowest class, and within it the response
// rank prefers. A 503 becomes a 500, so that the caller does not take
// this proxy for overloaded, unless it is one of busy: then the gateway
// is overloaded, any request it proxied would get the same (step 6's
// exception), and the caller should heed its Retry-After. A 401 or 407
// carries the challenges of every 401 and 407 (step 7). The responses
// are not changed.
func bestResponse(finals, busy []*sip.Response) *sip.Response {
	var best *sip.Response
	for _, r := range finals {
		switch {
		case best == nil:
			best = r
		case best.StatusCode >= 600:
		case r.StatusCode >= 600 || rank(r.StatusCode) < rank(best.StatusCode):
			best = r
		}
	}
	if best == nil {
		return nil
	}
	chosen := best
	best = best.Clone()
	switch best.StatusCode {
	case 503:
		if !slices.Contains(busy, chosen) {
			best.StatusCode, best.Reason = 500, sip.StatusText(500)
		}
	case 401, 407:
		for _, r := range finals {
			if r == chosen || (r.StatusCode != 401 && r.StatusCode != 407) {
				continue
			}
			for _, name := range [...]string{"WWW-Authenticate", "Proxy-Authenticate"} {
				for _, v := range r.Values(name) {
					best.Add(name, v)
				}
			}
		}
	}
	return best
}

// rank orders final responses below 600, lower first: by class, then
// within 4xx the responses that let the caller retry (§16.7 step 6: 401,
// 407, 415, 420, 484), then the informative ones, and last those that say
// least: timeouts and our own cancellations.
func rank(code int) int {
	class := code / 100 * 100
	if class != 400 {
		return class * 10
	}
	pref := 50
	switch code {
	case 407:
		pref = 0
	case 401:
		pref = 1
	case 415:
		pref = 2
	case 420:
		pref = 3
	case 484:
		pref = 4
	case 486:
		pref = 10
	case 480:
		pref = 20
	case 404:
		pref = 30
	case 408:
		pref = 80
	case 487:
		pref = 90
	}
	return class*10 + pref
}
