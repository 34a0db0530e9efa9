package b2bua

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/transfer"
	"github.com/switchboard/switchboard/internal/inorder"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// Defaults of Options.
const (
	// DefaultSessionExpires is the session interval asked of callees
	// (RFC 4028; the RFC recommends 1800 s).
	DefaultSessionExpires = 1800 * time.Second
	// DefaultMinSE is the smallest session interval accepted (RFC 4028
	// §4: at least 90 s).
	DefaultMinSE = 90 * time.Second
	// DefaultRingTimeout bounds how long a callee may ring.
	DefaultRingTimeout = 3 * time.Minute
	// DefaultCancelTimeout bounds the wait for the final response of a
	// canceled INVITE (64*T1).
	DefaultCancelTimeout = 32 * time.Second
	// DefaultBusyRetryAfter is the Retry-After of the 503 beyond
	// MaxCalls: calls last minutes, but a place frees up every few
	// seconds on a busy gateway.
	DefaultBusyRetryAfter = 5 * time.Second
	// DefaultFlowGrace is how long a call waits for a user agent whose
	// connection closed to come back over a new one: JsSIP and SIP.js
	// reconnect within seconds, a laptop waking up or a phone changing
	// networks takes longer.
	DefaultFlowGrace = 30 * time.Second
	// DefaultEndedCalls is how many ended calls Ended keeps.
	DefaultEndedCalls = 100
)

// Options configures a B2BUA. Engine, Transactions, Sender and Identity
// are required; every other zero field has a working default.
// Options are read once, by New.
type Options struct {
	// Engine makes the media bridge of each call.
	Engine *media.Engine
	// Transactions starts the client transactions of both legs: the
	// *transaction.Layer whose Handler passes in-dialog requests to
	// HandleInDialog.
	Transactions transaction.Requester
	// Sender sends what has no transaction: the ACK for a 2xx. Normally
	// the transport layer, the transaction layer's Sender.
	Sender transaction.Sender
	// Identity is who the gateway is: each leg's Via and Contact name the
	// gateway's endpoint on the leg's transport, at which in-dialog
	// requests reach the gateway again.
	Identity *identity.Identity

	// SessionExpires is the session interval (RFC 4028) asked of callees
	// and the largest granted to callers; default DefaultSessionExpires.
	// Negative turns session timers off: no Session-Expires is sent, and
	// those of peers are ignored.
	SessionExpires time.Duration
	// MinSE is the smallest session interval accepted: a request asking
	// for less gets 422 with Min-SE; default DefaultMinSE.
	MinSE time.Duration
	// RingTimeout bounds how long a callee may ring before the call is
	// given up (CANCEL, 408 to the caller); default DefaultRingTimeout.
	RingTimeout time.Duration
	// CancelTimeout bounds the wait for the final response of a canceled
	// INVITE; default DefaultCancelTimeout.
	CancelTimeout time.Duration
	// MaxCalls bounds the calls in progress; beyond it new calls get 503
	// with Retry-After: BusyRetryAfter. Zero means no bound.
	MaxCalls int
	// BusyRetryAfter is the Retry-After of the 503 beyond MaxCalls;
	// default DefaultBusyRetryAfter. A trunk may hold all its calls to
	// the gateway for that long, so it is short.
	BusyRetryAfter time.Duration
	// UserAgent, when set, is sent in User-Agent and Server headers.
	UserAgent string
	// FlowGrace is how long a call whose leg is reached over a
	// connection (a browser's WebSocket, a phone's TCP flow) waits, once
	// that connection closed, for its user agent to register again over
	// a new one (see FlowClosed); default DefaultFlowGrace. Negative ends
	// such a call at once.
	FlowGrace time.Duration
	// EndedCalls is how many ended calls Ended keeps, with their causes;
	// default DefaultEndedCalls, negative none.
	EndedCalls int
	// Transfer is the policy applied to the REFERs the calls relay; nil
	// is a zero transfer.Policy (only our users transfer).
	Transfer *transfer.Policy
	// Order is where the transaction layer's Admit gave each in-dialog
	// request its place, in the order the requests arrived (the gateway
	// shares one with its proxy: proxy.Proxy.Arrive). The requests of
	// one leg are relayed to the other in that order: each waits in
	// HandleInDialog for those ahead of it to be sent. Nil relays them
	// as their handlers run, in no particular order.
	Order *inorder.Order

	// Clock runs the ring, session, cancel and grace timers; nil is the
	// system clock.
	Clock clock.Clock
	// Logger receives the call logs, each line with the call's id; nil
	// discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.Engine == nil:
		return o, fmt.Errorf("%w: no media engine", ErrInvalidOptions)
	case o.Transactions == nil:
		return o, fmt.Errorf("%w: no transactions", ErrInvalidOptions)
	case o.Sender == nil:
		return o, fmt.Errorf("%w: no sender", ErrInvalidOptions)
	case o.Identity == nil:
		return o, fmt.Errorf("%w: no identity", ErrInvalidOptions)
	}
	if o.SessionExpires == 0 {
		o.SessionExpires = DefaultSessionExpires
	}
	if o.MinSE <= 0 {
		o.MinSE = DefaultMinSE
	}
	if o.SessionExpires > 0 && o.SessionExpires < o.MinSE {
		o.SessionExpires = o.MinSE
	}
	if o.RingTimeout <= 0 {
		o.RingTimeout = DefaultRingTimeout
	}
	if o.CancelTimeout <= 0 {
		o.CancelTimeout = DefaultCancelTimeout
	}
	if o.BusyRetryAfter < time.Second {
		o.BusyRetryAfter = DefaultBusyRetryAfter
	}
	if o.FlowGrace == 0 {
		o.FlowGrace = DefaultFlowGrace
	}
	if o.EndedCalls == 0 {
		o.EndedCalls = DefaultEndedCalls
	}
	if o.Transfer == nil {
		o.Transfer = &transfer.Policy{}
	}
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Target is where the callee leg of a call goes.
type Target struct {
	// URI is the Request-URI of the callee's INVITE: a registered
	// Contact, or the trunk's URI for the dialled number.
	URI sip.URI
	// Dst is where the callee leg's requests are sent: the flow of a
	// WebSocket or outbound binding (Flow set), the source address of a
	// phone behind NAT, or the trunk's address. Every request of the leg
	// goes there.
	Dst sip.Addr
	// Route is the route set to put in the INVITE, top first: the Path of
	// the binding, or the trunk's outbound proxy.
	Route []sip.Address
	// Failover are more addresses of the callee's next hop, best first
	// (RFC 3263): the INVITE goes to each in turn after Dst when it gets a
	// 503, a timeout or a transport error before any provisional
	// response.
	Failover []sip.Addr
	// WebRTC says that the callee is a browser (it registered over WS or
	// WSS): it gets a WebRTC offer. Otherwise it gets RTP/AVP.
	WebRTC bool
	// User is the user of ours whose registration the callee is, and
	// CallerUser the user of ours the caller authenticated as; "" for a
	// trunk or a stranger. A party's REFERs are trusted as its user's
	// (package transfer).
	User, CallerUser string
	// Codecs, when not nil, is the codec policy of the call (a trunk's
	// own list) in place of the media engine's: media.BridgeOptions.
	Codecs []media.Codec
}

// B2BUA is the call control of calls that cross between WebRTC and SIP.
// Make it with New; it is safe for concurrent use.
type B2BUA struct {
	opts     Options
	log      *slog.Logger
	clock    clock.Clock
	transfer *transfer.Policy

	mu      sync.Mutex
	calls   map[string]*call
	legs    map[legKey]*leg
	down    map[*leg]struct{} // legs waiting for their connection to come back
	ended   []CallInfo        // the last ended calls, oldest first
	closed  bool
	waiting bool // Close is waiting for the goroutines: start no more
	wg      sync.WaitGroup

	reconnects, flowLost atomic.Uint64
	busy                 atomic.Uint64 // calls refused at MaxCalls

	// onTurnWait, set by tests before the first call, is told of each
	// request that waits for its leg's turn (see leg.start).
	onTurnWait func(role, method string)
}

// legKey finds the leg of an in-dialog request: its Call-ID and the tag
// the gateway put in the dialog (the To tag of requests it receives).
// Tags are random, so the remote tag is checked by the dialog itself.
type legKey struct {
	callID, localTag string
}

// New returns a B2BUA, or an error wrapping ErrInvalidOptions.
func New(opts Options) (*B2BUA, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &B2BUA{
		opts:     o,
		log:      o.Logger,
		clock:    o.Clock,
		calls:    make(map[string]*call),
		legs:     make(map[legKey]*leg),
		down:     make(map[*leg]struct{}),
		transfer: o.Transfer,
	}, nil
}

// spawn runs f in a goroutine that Close waits for. It reports false, and
// does not run f, once Close has stopped waiting for new work.
func (b *B2BUA) spawn(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

// register adds c and its legs to the tables; it fails once the B2BUA is
// closing or holds MaxCalls calls.
func (b *B2BUA) register(c *call) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.opts.MaxCalls > 0 && len(b.calls) >= b.opts.MaxCalls {
		b.busy.Add(1)
		return fmt.Errorf("%w: %d", ErrTooManyCalls, len(b.calls))
	}
	b.calls[c.id] = c
	b.legs[c.caller.key] = c.caller
	b.legs[c.callee.key] = c.callee
	return nil
}

func (b *B2BUA) unregister(c *call) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.calls[c.id] == c {
		delete(b.calls, c.id)
	}
	for _, l := range []*leg{c.caller, c.callee} {
		if b.legs[l.key] == l {
			delete(b.legs, l.key)
		}
	}
}

// strayQueue is how many stray 2xx responses a call holds for its
// watcher; more are dropped (the callee sends its 2xx again).
const strayQueue = 4

// HandleStray takes a response that matched no client transaction (the
// transaction layer's Config.OnStrayResponse) and reports whether it was
// the B2BUA's. A 2xx to the INVITE that set up one of its calls normally
// reaches the call through that INVITE's transaction, which stays for
// Timer M (RFC 6026) to pass the callee's retransmissions on; but at the
// client transactions' bound a lingering one is ended early to make room,
// and a 2xx that comes after that is stray. The callee resends it until
// it gets an ACK (RFC 3261 §13.3.1.4), and would end the call without
// one; so the call acknowledges it again, or, from another fork,
// acknowledges it and ends that dialog, as it does those the transaction
// passes on. A 2xx to the last re-INVITE the B2BUA sent on a leg is
// acknowledged again likewise. Any other response is not the B2BUA's.
func (b *B2BUA) HandleStray(res *sip.Response) bool {
	if !res.IsSuccess() || res.CSeq().Method != sip.MethodInvite {
		return false
	}
	b.mu.Lock()
	l := b.legs[legKey{res.CallID(), res.From().Tag()}]
	b.mu.Unlock()
	if l == nil {
		return false
	}
	if l.ackAgain(res) {
		return true
	}
	if l != l.c.callee {
		return false
	}
	select {
	case l.c.strays <- res:
	default: // the watcher is behind: the callee will send it again
	}
	return true
}

// HandleInDialog serves a request within one of the B2BUA's dialogs — BYE,
// re-INVITE, UPDATE, INFO, PRACK, OPTIONS, MESSAGE, REFER, NOTIFY, and the ACK of a 2xx
// (with a nil tx) — and reports true; it returns false at once for any
// other request, which the caller routes as usual (the proxy). It blocks
// until the request is answered, as a transaction.Handler does.
//
// A request belongs to the B2BUA when its To tag is one the B2BUA gave
// out for its Call-ID. Call it before the proxy for every request with a
// To tag. ctx is the request's, as the transaction.Handler got it.
//
// With Options.Order, the requests of one leg are served, and relayed to
// the other, in the order they arrived.
func (b *B2BUA) HandleInDialog(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) bool {
	tag := req.To().Tag()
	if tag == "" || req.Method == sip.MethodCancel {
		return false
	}
	b.mu.Lock()
	l := b.legs[legKey{req.CallID(), tag}]
	b.mu.Unlock()
	if l == nil {
		return false
	}
	// The request is shared with the transaction layer: reading headers
	// fills its parse cache, so work on a copy of our own.
	orig := req
	req = req.Clone()
	if req.Method == sip.MethodAck {
		l.c.onAck(l, req)
		return true
	}
	if tx == nil {
		return true
	}
	// Its turn among the requests of its leg, from the same side, that
	// arrived before it: waited for here, where it holds nothing that one
	// of them may need, and passed on once it was relayed or answered.
	sent := func() {}
	if b.opts.Order != nil {
		sent = b.opts.Order.Await(ctx, orig)
	}
	defer sent()
	l.c.serve(l, tx, req, sent)
	return true
}

// LegInfo describes one leg of a call.
type LegInfo struct {
	// CallID, LocalTag and RemoteTag name the leg's dialog; RemoteTag is
	// empty until the peer answered.
	CallID    string `json:"call_id"`
	LocalTag  string `json:"local_tag"`
	RemoteTag string `json:"remote_tag,omitempty"`
	// URI is the peer: the caller's From, the callee's Request-URI.
	URI string `json:"uri"`
	// Dst is where the leg's requests go.
	Dst string `json:"dst"`
	// WebRTC is set for the browser's leg.
	WebRTC bool `json:"webrtc"`
	// FlowDownSince is set while the connection that reaches the peer
	// has closed and the call waits for a new one (Options.FlowGrace).
	FlowDownSince time.Time `json:"flow_down_since,omitzero"`
}

// CallInfo is a snapshot of a call, for the admin API.
type CallInfo struct {
	// ID names the call in logs, CallInfo and Hangup.
	ID string `json:"id"`
	// State is "calling", "ringing", "early", "answered" or "ended".
	State string `json:"state"`
	// Started is when the caller's INVITE arrived; Answered when the
	// callee answered (zero before).
	Started  time.Time `json:"started"`
	Answered time.Time `json:"answered,omitzero"`
	// Caller is the leg of the INVITE the gateway answers, Callee the leg
	// of the INVITE it sends.
	Caller LegInfo `json:"caller"`
	Callee LegInfo `json:"callee"`
	// Media are the bridge's counters.
	Media media.Stats `json:"media"`
	// Ended is when an ended call ended, and Cause why (an error wrapping
	// one of the package's sentinels, or of media's); both are empty
	// while the call is in progress.
	Ended time.Time `json:"ended,omitzero"`
	Cause string    `json:"cause,omitempty"`
}

// Stats counts what the B2BUA did since New, for metrics.
type Stats struct {
	// Reconnects counts the legs of calls in progress that moved to a new
	// connection of their user agent (FlowMoved): reconnects survived.
	Reconnects uint64
	// FlowLost counts the calls ended because the connection of a leg
	// closed and none replaced it within Options.FlowGrace.
	FlowLost uint64
	// Busy counts the calls refused with 503 because Options.MaxCalls
	// calls were in progress.
	Busy uint64
}

// Stats returns the B2BUA's counters.
func (b *B2BUA) Stats() Stats {
	return Stats{Reconnects: b.reconnects.Load(), FlowLost: b.flowLost.Load(), Busy: b.busy.Load()}
}

// Calls returns a snapshot of the calls in progress, oldest first.
func (b *B2BUA) Calls() []CallInfo {
	calls := b.current(false)
	out := make([]CallInfo, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.info())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Ended returns the last ended calls, newest first, each with when and why
// it ended (Options.EndedCalls of them).
func (b *B2BUA) Ended() []CallInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]CallInfo, len(b.ended))
	for i, ci := range b.ended {
		out[len(out)-1-i] = ci
	}
	return out
}

// Lookup returns the call id, in progress or among those Ended keeps.
func (b *B2BUA) Lookup(id string) (CallInfo, bool) {
	b.mu.Lock()
	c := b.calls[id]
	if c == nil {
		defer b.mu.Unlock()
		for i := len(b.ended) - 1; i >= 0; i-- {
			if b.ended[i].ID == id {
				return b.ended[i], true
			}
		}
		return CallInfo{}, false
	}
	b.mu.Unlock()
	return c.info(), true
}

// remember keeps ci, an ended call, for Ended.
func (b *B2BUA) remember(ci CallInfo) {
	n := b.opts.EndedCalls
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.ended) >= n {
		copy(b.ended, b.ended[len(b.ended)-n+1:])
		b.ended = b.ended[:n-1]
	}
	b.ended = append(b.ended, ci)
}

// Hangup ends the call id: BYE on both legs once answered, 480 to the
// caller and CANCEL to the callee before. It returns at once (the BYEs
// complete in the background), or ErrNoCall.
func (b *B2BUA) Hangup(id string) error {
	b.mu.Lock()
	c := b.calls[id]
	b.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%w: %q", ErrNoCall, id)
	}
	c.hangup(ErrHangup, nil)
	return nil
}

// Drain refuses new calls with 503, as Close does, but leaves the calls in
// progress alone, and waits until they have all ended or ctx is done: the
// grace period of a graceful shutdown, which Close ends. It returns ctx's
// error if ctx ended first.
func (b *B2BUA) Drain(ctx context.Context) error {
	// No call can be added once closed: these are all that remain.
	return waitEnded(ctx, b.current(true))
}

// current returns the calls in progress; with refuse set, the B2BUA takes
// no new ones from then on.
func (b *B2BUA) current(refuse bool) []*call {
	b.mu.Lock()
	defer b.mu.Unlock()
	if refuse {
		b.closed = true
	}
	calls := make([]*call, 0, len(b.calls))
	for _, c := range b.calls {
		calls = append(calls, c)
	}
	return calls
}

// waitEnded waits until every one of calls has ended, or ctx is done.
func waitEnded(ctx context.Context, calls []*call) error {
	for _, c := range calls {
		select {
		case <-c.finished:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close ends every call (BYE on both legs of answered calls, 503 to
// callers still waiting), refuses new ones with 503, and waits until every
// call has ended and the BYEs and CANCELs it sent are answered, or until
// ctx is done: the SIGTERM drain. It returns ctx's error if ctx ended
// first. The transaction layer must stay open until Close returns.
func (b *B2BUA) Close(ctx context.Context) error {
	calls := b.current(true)
	for _, c := range calls {
		c.hangup(ErrClosed, nil)
	}
	// The BYEs for legs whose connection is down go out now, and fail:
	// the gateway is stopping, and will not wait for them to come back.
	b.releaseWaits()
	// Calls still being set up answer their caller and leave the tables
	// in their own goroutines.
	if err := waitEnded(ctx, calls); err != nil {
		return err
	}
	b.mu.Lock()
	b.waiting = true
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		// Ends when the last BYE transaction does, Close returned or not.
		b.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
