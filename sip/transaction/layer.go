package transaction

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// Sender is the transport, as the transaction layer needs it. Requests of a
// client transaction go to the destination given to Layer.Request;
// responses of a server transaction go to the request's Source (the
// transport applies RFC 3261 §18.2.2 itself).
//
// Send may be called from several goroutines at once, for the same message
// too (a timer's retransmission and the answer to a retransmitted request):
// it must only read msg. The layer parses the typed headers the transport
// needs (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length) before
// the first Send, so reading them with the sip.Headers accessors is safe.
// Send should not block for long: it delays only the transaction (or the
// HandleMessage call) that sends, never the others.
type Sender interface {
	Send(ctx context.Context, msg sip.Message, dst sip.Addr) error
}

// Handler answers requests, like http.Handler. ServeSIP runs in its own
// goroutine, one per server transaction, so it may block until it has
// answered (a proxy or B2BUA waits for the next hop there); the number of
// such goroutines is bounded by Config.MaxServerTransactions.
//
// tx is nil for an ACK that matches no server transaction (the ACK for a 2xx
// response, which RFC 3261 makes a transaction of its own, §17.1.1.3) and
// for an ACK that reaches an INVITE server transaction in the Accepted
// state (RFC 6026 §8.7): such ACKs are handed over, never absorbed.
//
// If ServeSIP returns before a final response was sent, the layer answers
// 487 Request Terminated if the request was canceled and 500 Server
// Internal Error otherwise, so a transaction can never be left pending. A
// panic in ServeSIP is recovered, logged and answered the same way.
type Handler interface {
	ServeSIP(tx *ServerTx, req *sip.Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(tx *ServerTx, req *sip.Request)

// ServeSIP calls f(tx, req).
func (f HandlerFunc) ServeSIP(tx *ServerTx, req *sip.Request) { f(tx, req) }

// notImplemented is the Handler of a Layer made with a nil one.
func notImplemented(tx *ServerTx, req *sip.Request) {
	if tx != nil {
		_ = tx.Respond(tx.autoResponse(501))
	}
}

// clientKey matches responses to client transactions (§17.1.3).
type clientKey struct {
	branch, method string
}

// serverKey matches requests to server transactions whose branch has the
// magic cookie (§17.2.3): branch, sent-by, and method with ACK as INVITE.
type serverKey struct {
	branch string
	host   string // lower case
	port   int
	method string
}

// viaID is what RFC 2543 matching compares of the top Via. The received and
// rport parameters, which the receiving transport may add, are left out.
type viaID struct {
	transport, host string
	port            int
	branch          string
}

// legacyKey matches requests from RFC 2543 elements (§17.2.3): Request-URI,
// To tag, From tag, Call-ID, CSeq and top Via. An INVITE transaction is also
// indexed under the To tag of its final response, which is how its ACK
// matches.
type legacyKey struct {
	uri                    sip.URI
	toTag, fromTag, callID string
	cseq                   uint32
	method                 string
	via                    viaID
}

// Layer is the transaction layer: it matches what the transport receives to
// transactions, runs their timers and sends through a Sender. Its methods
// are safe for concurrent use.
type Layer struct {
	sender  Sender
	handler Handler
	t       timers
	clock   clock.Clock
	log     *slog.Logger
	stray   func(*sip.Response)
	onFinal func(server bool, method string, status int)
	max     int
	retry   string

	// ctx is passed to Send for everything but the first transmission of a
	// client request; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards the fields below. It is a leaf lock: nothing else is locked
	// while it is held (a transaction's lock may be held when taking it).
	mu      sync.Mutex
	closed  bool
	clients map[clientKey]*ClientTx
	servers map[serverKey]*ServerTx
	legacy  map[legacyKey]*ServerTx
	nServer int
	// pending counts the slots bounded by max: each server transaction
	// (but CANCEL's, see handleCancel) from its creation until it has
	// terminated and its handler has returned, and each running handler of
	// a transaction-less ACK.
	pending  int
	rejected uint64

	handlers sync.WaitGroup
}

// New returns a Layer that sends through s and hands new requests to h. A
// nil h answers every request with 501 Not Implemented (a client-only
// Layer).
func New(s Sender, h Handler, cfg Config) *Layer {
	if h == nil {
		h = HandlerFunc(notImplemented)
	}
	l := &Layer{
		sender:  s,
		handler: h,
		t:       cfg.timers(),
		clock:   clock.Or(cfg.Clock),
		log:     cfg.Logger,
		stray:   cfg.OnStrayResponse,
		onFinal: cfg.OnFinal,
		max:     cfg.MaxServerTransactions,
		clients: make(map[clientKey]*ClientTx),
		servers: make(map[serverKey]*ServerTx),
		legacy:  make(map[legacyKey]*ServerTx),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.max <= 0 {
		l.max = DefaultMaxServerTransactions
	}
	retry := orDefault(cfg.RetryAfter, DefaultRetryAfter)
	l.retry = strconv.Itoa(max(1, int(retry.Seconds())))
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// Stats is a snapshot of a Layer's load.
type Stats struct {
	// ClientTransactions is the number of client transactions not yet
	// terminated.
	ClientTransactions int
	// ServerTransactions is the number of server transactions not yet
	// terminated.
	ServerTransactions int
	// Pending is the number of slots in use out of MaxServerTransactions.
	Pending int
	// Rejected counts the requests answered 503 and the ACKs dropped
	// because MaxServerTransactions was reached, since New.
	Rejected uint64
}

// Stats returns the current load.
func (l *Layer) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{len(l.clients), l.nServer, l.pending, l.rejected}
}

// HandleMessage is called by the transport for every message it receives,
// with msg.Src() set. It does not block on the TU: a new request starts a
// server transaction whose Handler runs in a goroutine of its own;
// retransmissions are absorbed by their transaction; responses go to their
// client transaction, or to Config.OnStrayResponse. It waits only for
// Sender.Send (when it answers a retransmission, sends an ACK or a stateless
// response) and for OnStrayResponse.
func (l *Layer) HandleMessage(msg sip.Message) {
	switch m := msg.(type) {
	case *sip.Request:
		if m != nil {
			l.handleRequest(m)
		}
	case *sip.Response:
		if m != nil {
			l.handleResponse(m)
		}
	}
}

func (l *Layer) handleResponse(res *sip.Response) {
	warm(&res.Headers)
	via, ok := res.TopVia()
	cseq := res.CSeq()
	if !ok || cseq.Method == "" {
		l.log.Debug("sip transaction: dropping response without via or cseq", "status", res.StatusCode)
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	tx := l.clients[clientKey{via.Branch(), cseq.Method}]
	l.mu.Unlock()
	if tx == nil {
		if l.stray != nil {
			l.stray(res)
		} else {
			l.log.Debug("sip transaction: dropping stray response", "status", res.StatusCode, "branch", via.Branch())
		}
		return
	}
	tx.receive(res)
}

func (l *Layer) handleRequest(req *sip.Request) {
	warm(&req.Headers)
	via, ok := req.TopVia()
	if !ok {
		l.log.Debug("sip transaction: dropping request without via", "method", req.Method)
		return
	}
	match := req.Method
	if match == sip.MethodAck {
		match = sip.MethodInvite
	}
	branch := via.Branch()
	rfc3261 := strings.HasPrefix(branch, sip.BranchCookie)
	var sk serverKey
	var lk legacyKey
	if rfc3261 {
		sk = serverKey{branch, strings.ToLower(via.Host), via.Port, match}
	} else {
		lk = legacyKeyOf(req, &via, match)
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	var tx *ServerTx
	if rfc3261 {
		tx = l.servers[sk]
	} else {
		tx = l.legacy[lk]
	}
	if tx != nil {
		l.mu.Unlock()
		if tx.receive(req) {
			l.dispatchAck(req)
		}
		return
	}
	switch req.Method {
	case sip.MethodAck:
		l.mu.Unlock()
		l.dispatchAck(req)
		return
	case sip.MethodCancel:
		l.handleCancel(req, rfc3261, sk, lk) // unlocks l.mu
		return
	}
	// Pending transactions are bounded by max; answered ones that linger
	// only to absorb retransmissions (Timer J, K, I) by a larger bound,
	// so that memory stays bounded without capping the request rate at
	// max over the linger time.
	if l.pending >= l.max || l.nServer >= lingerFactor*l.max {
		l.rejected++
		l.mu.Unlock()
		l.log.Warn("sip transaction: answering 503", "method", req.Method, "max", l.max, "err", ErrTooManyTransactions)
		l.reject(req, 503)
		return
	}
	tx = newServerTx(l, req, rfc3261, sk, lk)
	l.insertServer(tx)
	l.pending++
	l.handlers.Add(1)
	l.mu.Unlock()

	tx.start()
	go l.serve(tx)
}

// handleCancel is called with l.mu held, for a CANCEL that matches no
// CANCEL transaction. A CANCEL that matches an INVITE server transaction
// gets a transaction of its own, answered by the layer: 200 if the INVITE
// transaction has not sent a final response yet (and then Canceled is
// signaled), 481 otherwise. Such CANCEL transactions are not counted against
// MaxServerTransactions, lest an overloaded server be unable to drop calls:
// there is at most one alive per INVITE transaction, and no handler. A
// CANCEL that matches nothing gets 481 statelessly.
func (l *Layer) handleCancel(req *sip.Request, rfc3261 bool, sk serverKey, lk legacyKey) {
	var inv *ServerTx
	if rfc3261 {
		ik := sk
		ik.method = sip.MethodInvite
		inv = l.servers[ik]
	} else {
		ik := lk
		ik.method = sip.MethodInvite
		inv = l.legacy[ik]
	}
	if inv == nil {
		l.mu.Unlock()
		l.reject(req, 481)
		return
	}
	tx := newServerTx(l, req, rfc3261, sk, lk)
	tx.handlerDone = true
	l.insertServer(tx)
	l.mu.Unlock()

	// The 200 goes out before Canceled is signaled, so that the TU's 487
	// cannot overtake it. A final response that the TU sends in between
	// crosses the CANCEL, which then has no effect (§9.2).
	code, tag := 481, ""
	if ok, invTag := inv.cancelable(); ok {
		code, tag = 200, invTag
	}
	res := sip.NewResponse(req, code, "")
	if tag == "" {
		tag = sip.NewTag()
	}
	res.SetToTag(tag)
	if err := tx.Respond(res); err != nil {
		l.log.Debug("sip transaction: answering cancel", "err", err)
	}
	if code == 200 {
		inv.signalCancel()
	}
}

func (l *Layer) insertServer(tx *ServerTx) {
	if tx.rfc3261 {
		l.servers[tx.key] = tx
	} else {
		l.legacy[tx.lkey] = tx
	}
	l.nServer++
}

func (l *Layer) removeServer(tx *ServerTx) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tx.rfc3261 {
		if l.servers[tx.key] == tx {
			delete(l.servers, tx.key)
		}
	} else {
		if l.legacy[tx.lkey] == tx {
			delete(l.legacy, tx.lkey)
		}
		if tx.hasAckKey && l.legacy[tx.ackKey] == tx {
			delete(l.legacy, tx.ackKey)
		}
	}
	l.nServer--
}

// addAckKey indexes an RFC 2543 INVITE transaction under the To tag of its
// final response, which its ACK carries.
func (l *Layer) addAckKey(tx *ServerTx, k legacyKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, taken := l.legacy[k]; !taken {
		l.legacy[k] = tx
	}
}

// lingerFactor times MaxServerTransactions bounds the server transactions
// kept in all, answered ones included.
const lingerFactor = 16

func (l *Layer) release() {
	l.mu.Lock()
	l.pending--
	l.mu.Unlock()
}

// serve runs the handler of a server transaction.
func (l *Layer) serve(tx *ServerTx) {
	defer l.handlers.Done()
	defer tx.handlerReturned()
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("sip transaction: handler panic", "method", tx.req.Method, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	l.handler.ServeSIP(tx, tx.req)
}

// dispatchAck hands an ACK that no transaction absorbs to the Handler with
// a nil *ServerTx, in a goroutine that takes a slot while it runs. Beyond
// the bound the ACK is dropped (an ACK is never answered).
func (l *Layer) dispatchAck(req *sip.Request) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	if l.pending >= l.max {
		l.rejected++
		l.mu.Unlock()
		l.log.Warn("sip transaction: dropping ack", "max", l.max, "err", ErrTooManyTransactions)
		return
	}
	l.pending++
	l.handlers.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.handlers.Done()
		defer l.release()
		defer func() {
			if r := recover(); r != nil {
				l.log.Error("sip transaction: handler panic", "method", req.Method, "panic", r, "stack", string(debug.Stack()))
			}
		}()
		l.handler.ServeSIP(nil, req)
	}()
}

// reject answers req statelessly (481 to a CANCEL that matches nothing, 503
// beyond the bound).
func (l *Layer) reject(req *sip.Request, code int) {
	res := sip.NewResponse(req, code, "")
	res.SetToTag(sip.NewTag())
	if code == 503 {
		res.Set("Retry-After", l.retry)
	}
	warm(&res.Headers)
	if err := l.sender.Send(l.ctx, res, req.Source); err != nil {
		l.log.Debug("sip transaction: sending stateless response", "status", code, "err", err)
	}
}

// Requester starts client transactions: *Layer is one. The packages that
// send requests (the proxy, the B2BUA, trunk registrations) take a
// Requester rather than a *Layer.
type Requester interface {
	Request(ctx context.Context, req *sip.Request, dst sip.Addr) (*ClientTx, error)
}

var _ Requester = (*Layer)(nil)

// Request starts a client transaction that sends req to dst. ctx is passed
// to the Sender for the first transmission only; retransmissions, the ACK
// and a CANCEL use the Layer's own context, which Close cancels. Canceling
// ctx later does not end the transaction: Timer B or F does, or a final
// response; an INVITE is given up with Cancel.
// A proxy passes Forwarding(ctx), which shortens Timer F.
//
// The request must carry everything §8.1.1 asks for and a top Via whose
// branch starts with "z9hG4bK" and is unique (sip.NewBranch): the layer adds
// nothing. It must not be changed afterwards (it is retransmitted). ACK is
// not a transaction: the TU sends the ACK for a 2xx through the transport
// itself.
//
// Request fails only for an invalid request, a branch already in use, or a
// closed Layer. A transport error is reported through the transaction, as a
// synthesized 503 on Responses and ErrTransport from Err.
func (l *Layer) Request(ctx context.Context, req *sip.Request, dst sip.Addr) (*ClientTx, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: nil request", ErrInvalidRequest)
	}
	if req.Method == sip.MethodAck {
		return nil, fmt.Errorf("%w: ack is not a transaction", ErrInvalidRequest)
	}
	warm(&req.Headers)
	via, ok := req.TopVia()
	if !ok {
		return nil, fmt.Errorf("%w: no via", ErrMissingBranch)
	}
	if !strings.HasPrefix(via.Branch(), sip.BranchCookie) {
		return nil, fmt.Errorf("%w: branch %q", ErrMissingBranch, via.Branch())
	}
	if m := req.CSeq().Method; m != req.Method {
		return nil, fmt.Errorf("%w: cseq method %q differs from %q", ErrInvalidRequest, m, req.Method)
	}
	if !dst.IsValid() {
		return nil, fmt.Errorf("%w: invalid destination", ErrInvalidRequest)
	}
	tx := newClientTx(l, req, dst, via)
	tx.forwarding = isForwarding(ctx)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := l.clients[tx.key]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: branch %q method %s", ErrTransactionExists, tx.key.branch, tx.key.method)
	}
	l.clients[tx.key] = tx
	l.mu.Unlock()

	tx.mu.Lock()
	var ob outbox
	tx.start(&ob)
	tx.mu.Unlock()
	tx.flushCtx(ctx, ob)
	return tx, nil
}

func (l *Layer) removeClient(tx *ClientTx) {
	l.mu.Lock()
	if l.clients[tx.key] == tx {
		delete(l.clients, tx.key)
	}
	l.mu.Unlock()
}

// Close terminates every transaction (their Err becomes ErrClosed, their
// Done channels close, their timers stop), stops accepting messages, and
// waits for the running handlers to return: a handler that waits for
// something should also select on tx.Done(). Because of that wait, Close
// must not be called from a Handler. Close always returns nil.
func (l *Layer) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.handlers.Wait()
		return nil
	}
	l.closed = true
	clients := make([]*ClientTx, 0, len(l.clients))
	for _, tx := range l.clients {
		clients = append(clients, tx)
	}
	servers := make([]*ServerTx, 0, l.nServer)
	for _, tx := range l.servers {
		servers = append(servers, tx)
	}
	for k, tx := range l.legacy {
		if k == tx.lkey {
			servers = append(servers, tx)
		}
	}
	l.mu.Unlock()

	for _, tx := range clients {
		tx.shutdown()
	}
	for _, tx := range servers {
		tx.shutdown()
	}
	l.cancel()
	l.handlers.Wait()
	return nil
}

func legacyKeyOf(req *sip.Request, via *sip.Via, method string) legacyKey {
	to, from := req.To(), req.From()
	return legacyKey{
		uri:     req.URI,
		toTag:   to.Tag(),
		fromTag: from.Tag(),
		callID:  req.CallID(),
		cseq:    req.CSeq().Seq,
		method:  method,
		via:     viaID{strings.ToUpper(via.Transport), strings.ToLower(via.Host), via.Port, via.Branch()},
	}
}
