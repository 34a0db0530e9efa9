package transaction

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// A Resender is a Sender that can hand back the bytes a response went as
// and send them again. A non-INVITE server transaction whose final
// response went so keeps those bytes instead of the response, to answer
// its request's retransmissions for the 64*T1 it lingers (Timer J). A
// parsed response is some 1,400 bytes of pointers, which the collector
// scans at every cycle, and it holds the text of the request its header
// values were copied from; the bytes are a third of that, without a
// pointer. Under REGISTER load the lingering transactions' responses
// were more than half of the gateway's live heap.
type Resender interface {
	// SendKept sends res to dst as Send does, and returns the bytes it
	// went as and the address they went to; nil bytes when Resend
	// cannot repeat them (the transaction keeps res then).
	SendKept(ctx context.Context, res *sip.Response, dst sip.Addr) (wire []byte, to sip.Addr, err error)
	// Resend sends wire, from SendKept, to to again.
	Resend(ctx context.Context, wire []byte, to sip.Addr) error
}

// A Replier is a Sender that sends a stateless answer knowing the request
// it answers, so that a transport worker handling that request may hold
// the answer and write it with the others of its run of work, in one
// system call (transport.Layer.Reply): under overload most of what the
// workers handle is refused, and a sendto each was the largest part of a
// refusal's cost. The Layer sends its stateless answers (the refusals of
// Config.Admit and of the bounds, the 481 to a stray CANCEL) through it
// when its Sender is one.
type Replier interface {
	Reply(ctx context.Context, req *sip.Request, res *sip.Response) error
}

// Handler answers requests, like http.Handler. ServeSIP runs in a
// goroutine of its own while it runs, one per server transaction (a
// worker of the Layer's pool), so it may block until it has answered (a
// proxy or B2BUA waits for the next hop there); the number of such
// goroutines is bounded by Config.MaxServerTransactions.
//
// tx is nil for an ACK that matches no server transaction (the ACK for a 2xx
// response, which RFC 3261 makes a transaction of its own, §17.1.1.3) and
// for an ACK that reaches an INVITE server transaction in the Accepted
// state (RFC 6026 §8.7): such ACKs are handed over, never absorbed.
//
// ctx ends when ServeSIP returns, as an http.Request's does, when the
// transaction ends (Terminated), when an INVITE is canceled (a CANCEL
// matched it), and when the Layer closes or the context given to New
// ends. For an ACK without transaction it is the Layer's own context,
// which ends only when the Layer closes: such a handler runs on the
// transport's worker and must leave no work tied to ctx behind when it
// returns. What the handler must send whatever happens (a final
// response, a 2xx forwarded upstream) it sends with
// context.WithoutCancel(ctx).
//
// If ServeSIP returns before a final response was sent, the layer answers
// 487 Request Terminated if the request was canceled and 500 Server
// Internal Error otherwise, so a transaction can never be left pending. A
// panic in ServeSIP is recovered, logged and answered the same way.
type Handler interface {
	ServeSIP(ctx context.Context, tx *ServerTx, req *sip.Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, tx *ServerTx, req *sip.Request)

// ServeSIP calls f(ctx, tx, req).
func (f HandlerFunc) ServeSIP(ctx context.Context, tx *ServerTx, req *sip.Request) { f(ctx, tx, req) }

// notImplemented is the Handler of a Layer made with a nil one.
func notImplemented(_ context.Context, tx *ServerTx, req *sip.Request) {
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

// detached returns k with its strings copied, in one allocation, so that
// it holds nothing of the request they were sliced from.
func (k serverKey) detached() serverKey {
	s := k.branch + k.host + k.method
	b, h := len(k.branch), len(k.branch)+len(k.host)
	return serverKey{branch: s[:b], host: s[b:h], port: k.port, method: s[h:]}
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
	sender    Sender
	resender  Resender // sender, when it is one
	handler   Handler
	t         timers
	clock     clock.Clock
	timers    timerHeap // of every transaction (timers.go)
	log       *slog.Logger
	stray     func(context.Context, *sip.Response)
	onFinal   func(server bool, method string, status int)
	admit     func(*sip.Request, time.Duration) (*sip.Response, bool)
	weigh     func(netip.Addr) int // Config.SourceWeight
	max       int                  // Config.MaxServerTransactions
	perSource int                  // Config.MaxServerTransactionsPerSource
	maxClient int                  // Config.MaxClientTransactions
	retry     string
	load      overload

	// ctx is passed to Send for everything but the first transmission of a
	// client request; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// detached is ctx without its cancellation: the parent of the
	// handlers' contexts, which are not registered with ctx one by one
	// (a lock of ctx and an entry in its map per transaction). When ctx
	// ends, endContexts ends theirs; unwatch stops that watch, and
	// contextsEnded is closed once endContexts has run.
	detached      context.Context
	unwatch       func() bool
	contextsEnded chan struct{}

	// mu guards the fields below. It is a leaf lock: nothing else is locked
	// while it is held (a transaction's lock may be held when taking it).
	mu      sync.Mutex
	closed  bool
	ctxDone bool // ctx has ended: new handlers' contexts end at once
	clients map[clientKey]*ClientTx
	// servers holds the RFC 3261 server transactions by branch, those
	// that share one (an INVITE and its CANCEL) listed through
	// ServerTx.sameBranch (serverTx, insertServer, unlinkServer): a string
	// key hashes and compares on the map's fast path, where a serverKey
	// hashed its three strings and its port on the generic one, for the
	// lookup, insertion and removal of every transaction.
	servers map[string]*ServerTx
	legacy  map[legacyKey]*ServerTx
	nServer int
	// places counts the places bounded by max (see bound.go): each server
	// transaction (a CANCEL's only when there is room, see handleCancel)
	// from its creation until it has terminated and its handler has
	// returned, and each running handler of a transaction-less ACK.
	// sources holds them by source.
	places int
	// lingerPlaces counts those of places held by the transactions on
	// lingering: the others are working (newWorkFull).
	lingerPlaces int
	sources      map[netip.Addr]*sourceLoad
	// freeLoads are sourceLoads to reuse (release).
	freeLoads []*sourceLoad
	weights   int // the sum of the weights of sources
	// recent holds the sources of the last new requests (those asked of
	// Admit), a ring of recentN entries, next at recentAt: the measure of
	// who brings the load, for Overloaded.
	recent            [recentSize]netip.Addr
	recentN, recentAt int
	// lingering lists, oldest first, the transactions that only absorb
	// retransmissions now: those that may be ended early to make room.
	lingering txList[*ServerTx]
	// clientLingering lists, oldest first, the client transactions in
	// clients that have their final response and only absorb its
	// retransmissions now (Timers D, K, M): those that may be ended
	// early to make room (see Request); the others in clients are
	// working.
	clientLingering txList[*ClientTx]
	// clientsWorking is len(clients) less clientLingering's, published
	// by noteClients after each change, for Overloaded to read without
	// l.mu: it asks about every new request.
	clientsWorking atomic.Int64

	running int // handlers running
	counts  Stats
	warned  time.Time // when the last overload warning was logged
	quiet   uint64    // overload warnings not logged since

	handlers sync.WaitGroup
	// workers run the handlers (pool.go).
	workers *pool
}

// New returns a Layer that sends through s and hands new requests to h. A
// nil h answers every request with 501 Not Implemented (a client-only
// Layer). ctx is the parent of the contexts the Layer gives its handlers
// and stray responses: its values reach them, and its end or Close ends
// them.
func New(ctx context.Context, s Sender, h Handler, cfg Config) *Layer {
	if h == nil {
		h = HandlerFunc(notImplemented)
	}
	resender, _ := s.(Resender)
	l := &Layer{
		sender:    s,
		resender:  resender,
		handler:   h,
		t:         cfg.timers(),
		clock:     clock.Or(cfg.Clock),
		log:       cfg.Logger,
		stray:     cfg.OnStrayResponse,
		onFinal:   cfg.OnFinal,
		admit:     cfg.Admit,
		weigh:     cfg.SourceWeight,
		max:       cfg.MaxServerTransactions,
		perSource: cfg.MaxServerTransactionsPerSource,
		maxClient: cfg.MaxClientTransactions,
		clients:   make(map[clientKey]*ClientTx),
		servers:   make(map[string]*ServerTx),
		legacy:    make(map[legacyKey]*ServerTx),
		sources:   make(map[netip.Addr]*sourceLoad),
		lingering: txList[*ServerTx]{idx: globalList},
		workers:   newPool(),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.timers.init(l.clock)
	if l.max <= 0 {
		l.max = DefaultMaxServerTransactions
	}
	if l.perSource > l.max {
		l.perSource = 0 // no bound of its own
	}
	if l.maxClient <= 0 {
		l.maxClient = DefaultMaxClientTransactions
	}
	l.load.limit, l.load.queue, l.load.queueLen = int64(cfg.OverloadDelay), cfg.QueueDelay, cfg.QueueLen
	if cfg.OverloadDelay == 0 {
		l.load.limit = int64(DefaultOverloadDelay)
	}
	l.load.lateAt = lateAfter(l.load.limit, l.t.t1)
	retry := orDefault(cfg.RetryAfter, DefaultRetryAfter)
	l.retry = strconv.Itoa(max(1, int(retry.Seconds())))
	l.ctx, l.cancel = context.WithCancel(ctx)
	l.detached = context.WithoutCancel(l.ctx)
	l.contextsEnded = make(chan struct{})
	l.unwatch = context.AfterFunc(l.ctx, l.endContexts)
	return l
}

// endContexts ends the handlers' contexts when the Layer's context ends.
// A transaction out of the tables has terminated, which ended its
// handler's context; one made from now on starts ended (newServerTx).
func (l *Layer) endContexts() {
	defer close(l.contextsEnded)
	l.workers.close()
	l.mu.Lock()
	l.ctxDone = true
	txs := l.serverTxs()
	l.mu.Unlock()
	for _, tx := range txs {
		tx.stopCtx()
	}
}

// serverTxs lists the server transactions in the tables, each once (an
// RFC 2543 INVITE may be there under its ACK's key too). Called with l.mu
// held.
func (l *Layer) serverTxs() []*ServerTx {
	txs := make([]*ServerTx, 0, l.nServer)
	for _, tx := range l.servers {
		for ; tx != nil; tx = tx.sameBranch {
			txs = append(txs, tx)
		}
	}
	for k, tx := range l.legacy {
		if k == tx.legacy.key {
			txs = append(txs, tx)
		}
	}
	return txs
}

// Stats is a snapshot of a Layer's load and of its counters since New.
type Stats struct {
	// ClientTransactions is the number of client transactions not yet
	// terminated, and ClientLingering the number of them that have their
	// final response and only absorb its retransmissions.
	ClientTransactions, ClientLingering int
	// ServerTransactions is the number of server transactions not yet
	// terminated.
	ServerTransactions int
	// Pending is the number of places in use out of
	// MaxServerTransactions (see there).
	Pending int
	// Handlers is the number of handlers running.
	Handlers int
	// Sources is the number of sources that hold places.
	Sources int
	// Rejected counts the requests answered 503 and the ACKs dropped
	// because MaxServerTransactions, a source's share of it or
	// MaxServerTransactionsPerSource was reached.
	Rejected uint64
	// Evicted counts the answered transactions ended before their time
	// to make room for new ones.
	Evicted uint64
	// ClientRejected counts the Request calls refused because
	// MaxClientTransactions client transactions were working.
	ClientRejected uint64
	// ClientEvicted counts the lingering client transactions ended
	// before their time to make room for new ones.
	ClientEvicted uint64
	// Refused and Dropped count the requests that Config.Admit answered
	// and dropped.
	Refused, Dropped uint64
	// HandlerDelay is the handlers' mean wait for a CPU, and Overloaded
	// whether it is over Config.OverloadDelay (see Overloaded).
	HandlerDelay time.Duration
	Overloaded   bool
}

// Stats returns the current load.
func (l *Layer) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.counts
	st.ClientTransactions = len(l.clients)
	st.ClientLingering = l.clientLingering.n
	st.ServerTransactions = l.nServer
	st.Pending = l.places
	st.Handlers = l.running
	st.Sources = len(l.sources)
	st.HandlerDelay = l.load.handlers.Last()
	st.Overloaded = l.load.over()
	return st
}

// HandleMessage is called by the transport for every message it receives,
// with msg.Src() set. It does not block on the TU: a new request starts a
// server transaction whose Handler runs in a goroutine of its own;
// retransmissions are absorbed by their transaction; responses go to
// their client transaction, or to Config.OnStrayResponse. It waits only
// for Sender.Send (when it answers a retransmission, sends an
// ACK or a stateless response) and for OnStrayResponse.
func (l *Layer) HandleMessage(msg sip.Message) {
	switch m := msg.(type) {
	case *sip.Request:
		if m != nil {
			l.handleRequest(m, 0)
		}
	case *sip.Response:
		if m != nil {
			l.handleResponse(m)
		}
	}
}

// HandleWaited is HandleMessage for a message that waited for waited
// below the layer, in the transport's queue (transport.WaitHandler): a new
// request that waited too long is refused as new work under overload
// (Overloaded).
func (l *Layer) HandleWaited(msg sip.Message, waited time.Duration) {
	if req, ok := msg.(*sip.Request); ok && req != nil {
		l.handleRequest(req, waited)
		return
	}
	l.HandleMessage(msg)
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
		l.handleStray(res)
		return
	}
	tx.receive(res)
}

// handleStray passes a response that no transaction takes to
// Config.OnStrayResponse, or drops it.
func (l *Layer) handleStray(res *sip.Response) {
	if l.stray != nil {
		l.stray(l.ctx, res)
		return
	}
	if via, ok := res.TopVia(); ok {
		l.log.Debug("sip transaction: dropping stray response", "status", res.StatusCode, "branch", via.Branch())
	}
}

func (l *Layer) handleRequest(req *sip.Request, waited time.Duration) {
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

	src := sourceOf(req.Source)
	admitted := false
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return
		}
		var tx *ServerTx
		if rfc3261 {
			var chain int
			if tx, chain = l.serverTx(sk); tx == nil && chain >= maxSameBranch {
				l.mu.Unlock()
				l.log.Debug("sip transaction: branch in use by too many transactions", "method", req.Method, "source", req.Source)
				l.reject(req, 400, "Branch In Use")
				return
			}
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
		if !admitted {
			l.noteRecent(src)
		}
		if admitted || l.admit == nil {
			break // with l.mu held
		}
		// Admit may take locks of its own: ask it unlocked, then look the
		// request up again, as a retransmission may have started its
		// transaction meanwhile.
		l.mu.Unlock()
		if !l.admitRequest(req, waited) {
			return
		}
		admitted = true
	}
	w := weight(req, l.placeCap())
	if l.newWorkFull(w) && !req.ContinuesWork() {
		l.overloaded(req.Method, req.Source) // unlocks l.mu
		l.reject(req, 503, "")
		return
	}
	load, evicted := l.acquire(src, w)
	if load == nil {
		l.overloaded(req.Method, req.Source) // unlocks l.mu
		endEvicted(evicted)
		l.reject(req, 503, "")
		return
	}
	tx := newServerTx(l, req, rfc3261, sk, lk)
	tx.weight, tx.load, tx.running = w, load, true
	l.insertServer(tx)
	l.running++
	l.handlers.Add(1)
	l.mu.Unlock()
	endEvicted(evicted)

	tx.start()
	tx.handed = l.timers.handedAt(tx.born)
	l.load.handed()
	l.workers.dispatch(l, tx, tx.handed)
}

// admitRequest asks Config.Admit about req and carries out a refusal. It
// reports whether req may start a transaction.
func (l *Layer) admitRequest(req *sip.Request, waited time.Duration) bool {
	res, drop := l.admit(req, waited)
	switch {
	case drop:
		l.mu.Lock()
		l.counts.Dropped++
		l.mu.Unlock()
		return false
	case res == nil:
		return true
	}
	l.mu.Lock()
	l.counts.Refused++
	l.mu.Unlock()
	if res.To().Tag() == "" {
		res.SetToTag(sip.NewTag())
	}
	l.sendStateless(req, res)
	return false
}

// handleCancel is called with l.mu held, for a CANCEL that matches no
// CANCEL transaction. A CANCEL that matches an INVITE server transaction
// gets a transaction of its own, answered by the layer: 200 if the INVITE
// transaction has not sent a final response yet (and then Canceled is
// signaled), 481 otherwise. Such a CANCEL is never refused for
// MaxServerTransactions, lest an overloaded server be unable to drop
// calls: it takes a place when the bounds give it one, and otherwise is
// answered all the same and its transaction ended at once, as if answered
// statelessly. A CANCEL that matches nothing gets 481 statelessly.
func (l *Layer) handleCancel(req *sip.Request, rfc3261 bool, sk serverKey, lk legacyKey) {
	var inv *ServerTx
	if rfc3261 {
		ik := sk
		ik.method = sip.MethodInvite
		inv, _ = l.serverTx(ik)
	} else {
		ik := lk
		ik.method = sip.MethodInvite
		inv = l.legacy[ik]
	}
	if inv == nil {
		l.mu.Unlock()
		l.reject(req, 481, "")
		return
	}
	tx := newServerTx(l, req, rfc3261, sk, lk)
	tx.handlerDone = true
	tx.weight = weight(req, l.placeCap())
	load, evicted := l.acquire(sourceOf(req.Source), tx.weight)
	tx.load, tx.endAtOnce = load, load == nil
	l.insertServer(tx)
	l.mu.Unlock()
	endEvicted(evicted)

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

// serverTx returns the RFC 3261 server transaction of k, nil if none,
// and how many transactions it looked at: those that share k's branch.
// Called with l.mu held.
func (l *Layer) serverTx(k serverKey) (tx *ServerTx, n int) {
	for tx = l.servers[k.branch]; tx != nil; tx = tx.sameBranch {
		if tx.key == k {
			return tx, n
		}
		n++
	}
	return nil, n
}

// maxSameBranch is how many server transactions may share a branch. An
// INVITE and its CANCEL do; more come only from a client that reuses its
// branches, or from an attacker who varies a request's sent-by or method
// under one branch so that every lookup of that branch walks a longer
// list with the Layer's lock held. The request that would be one more is
// refused with 400.
const maxSameBranch = 4

// insertServer puts tx, whose key is in no transaction of the tables
// (the caller looked it up with l.mu held since), in the tables. Called
// with l.mu held.
func (l *Layer) insertServer(tx *ServerTx) {
	if tx.rfc3261 {
		tx.sameBranch = l.servers[tx.key.branch]
		l.servers[tx.key.branch] = tx
	} else {
		l.legacy[tx.legacy.key] = tx
	}
	tx.inTable = true
	l.nServer++
}

// removeServer takes a terminated transaction out of the tables, once.
func (l *Layer) removeServer(tx *ServerTx) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unlinkServer(tx)
}

// unlinkServer is removeServer with l.mu held.
func (l *Layer) unlinkServer(tx *ServerTx) {
	if !tx.inTable {
		return // ended early to make room, or removed already
	}
	tx.inTable = false
	if tx.rfc3261 {
		l.unlinkBranch(tx)
	} else {
		if l.legacy[tx.legacy.key] == tx {
			delete(l.legacy, tx.legacy.key)
		}
		if tx.legacy.hasAck && l.legacy[tx.legacy.ack] == tx {
			delete(l.legacy, tx.legacy.ack)
		}
	}
	l.nServer--
	l.unlist(tx)
	l.freePlace(tx)
}

// unlinkBranch takes tx out of servers. Called with l.mu held.
func (l *Layer) unlinkBranch(tx *ServerTx) {
	b := tx.key.branch
	head := l.servers[b]
	switch {
	case head == tx && tx.sameBranch == nil:
		delete(l.servers, b)
	case head == tx:
		// The map keeps the key it was given with head: assigning the
		// next transaction's key replaces it (strings are updated on
		// assignment), so that it holds nothing of tx's request.
		next := tx.sameBranch
		l.servers[next.key.branch] = next
	default:
		for p := head; p != nil; p = p.sameBranch {
			if p.sameBranch == tx {
				p.sameBranch = tx.sameBranch
				break
			}
		}
	}
	tx.sameBranch = nil
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

// handlerDone notes that tx's handler has returned.
func (l *Layer) handlerDone(tx *ServerTx) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tx.running = false
	l.running--
	l.freePlace(tx)
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
	defer tx.stopCtx() // the handler's context ends with it
	l.handler.ServeSIP((*handlerContext)(tx), tx, tx.req)
}

// dispatchAck hands an ACK that no transaction absorbs to the Handler with
// a nil *ServerTx, in the caller's goroutine (the transport's worker for
// its lane: one Call-ID over UDP, one connection otherwise), holding a
// slot while it runs. Not in a goroutine of its own: the request that
// follows an ACK in its dialog (a BYE right after the ACK of a 2xx) must
// not overtake it on its way on, and the lane's worker serves the lane's
// messages in order. Beyond the
// bound the ACK is dropped (an ACK is never answered).
func (l *Layer) dispatchAck(req *sip.Request) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	src, w := sourceOf(req.Source), weight(req, l.placeCap())
	load, evicted := l.acquire(src, w)
	if load == nil {
		l.overloaded(req.Method, req.Source) // unlocks l.mu
		endEvicted(evicted)
		return
	}
	l.running++
	l.handlers.Add(1)
	l.mu.Unlock()
	endEvicted(evicted)
	defer l.handlers.Done()
	defer func() {
		l.mu.Lock()
		l.running--
		l.release(load, w)
		l.mu.Unlock()
	}()
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("sip transaction: handler panic", "method", req.Method, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	// The Layer's own context: a context per ACK, one a call, took the
	// lock of the Layer's and a place in its children map each time.
	l.handler.ServeSIP(l.ctx, nil, req)
}

// reject answers req statelessly (481 to a CANCEL that matches nothing, 503
// beyond the bound, 400 to a branch in use by too many), with reason as
// its reason phrase, the standard one if empty.
func (l *Layer) reject(req *sip.Request, code int, reason string) {
	res := sip.NewResponse(req, code, reason)
	res.SetToTag(sip.NewTag())
	if code == 503 {
		res.Set("Retry-After", l.retry)
	}
	l.sendStateless(req, res)
}

// sendStateless sends res, a stateless answer to req, through the
// Sender's Reply when it has one (Replier).
func (l *Layer) sendStateless(req *sip.Request, res *sip.Response) {
	warm(&res.Headers)
	var err error
	if r, ok := l.sender.(Replier); ok {
		err = r.Reply(l.ctx, req, res)
	} else {
		err = l.sender.Send(l.ctx, res, req.Source)
	}
	if err != nil {
		l.log.Debug("sip transaction: sending stateless response", "status", res.StatusCode, "err", err)
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
// Request fails only for an invalid request, a branch already in use, a
// closed Layer, or MaxClientTransactions client transactions working (see
// there). A transport error is reported through the transaction, as a
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
	// At the bound the oldest lingering transaction makes room: it has
	// its final response, and ending it loses only the absorption of a
	// retransmitted one, which then goes to OnStrayResponse. A CANCEL is
	// let through: there is at most one per INVITE, and an overloaded
	// gateway must still be able to stop its calls.
	var buf [1]*ClientTx
	evicted := buf[:0]
	for len(l.clients) >= l.maxClient && req.Method != sip.MethodCancel {
		old := l.clientLingering.head
		if old == nil {
			l.counts.ClientRejected++
			l.mu.Unlock()
			endEvictedClients(evicted)
			return nil, fmt.Errorf("%w: %d client transactions working", ErrTooManyTransactions, l.maxClient)
		}
		l.unlinkClient(old)
		l.counts.ClientEvicted++
		evicted = append(evicted, old)
	}
	l.clients[tx.key] = tx
	l.noteClients()
	l.mu.Unlock()
	endEvictedClients(evicted)

	tx.mu.Lock()
	var ob outbox
	tx.start(&ob)
	tx.mu.Unlock()
	tx.flushCtx(ctx, ob)
	return tx, nil
}

// removeClient takes a terminated client transaction out of the table,
// once.
func (l *Layer) removeClient(tx *ClientTx) {
	l.mu.Lock()
	l.unlinkClient(tx)
	l.mu.Unlock()
}

// unlinkClient is removeClient with l.mu held.
func (l *Layer) unlinkClient(tx *ClientTx) {
	if l.clients[tx.key] == tx {
		delete(l.clients, tx.key)
	}
	if tx.lingering {
		tx.lingering = false
		l.clientLingering.remove(tx)
	}
	l.noteClients()
}

// noteClients publishes the working client transactions. Called with
// l.mu held, after each change to clients or clientLingering.
func (l *Layer) noteClients() {
	l.clientsWorking.Store(int64(len(l.clients) - l.clientLingering.n))
}

// lingerClient lists tx, which has its final response and keeps a timer
// (D, K or M) only to absorb retransmissions of it, among those that may
// be ended early. Called with tx.mu held.
func (l *Layer) lingerClient(tx *ClientTx) {
	l.mu.Lock()
	if l.clients[tx.key] == tx && !tx.lingering {
		tx.lingering = true
		l.clientLingering.push(tx)
		l.noteClients()
	}
	l.mu.Unlock()
}

// endEvictedClients terminates client transactions that Request took out
// to make room: quietly, as their timer would have, since their TU has
// its final response.
func endEvictedClients(txs []*ClientTx) {
	for _, tx := range txs {
		tx.shutdownWith(nil)
	}
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
		l.workers.stop()
		return nil
	}
	l.closed = true
	clients := make([]*ClientTx, 0, len(l.clients))
	for _, tx := range l.clients {
		clients = append(clients, tx)
	}
	servers := l.serverTxs()
	l.mu.Unlock()

	for _, tx := range clients {
		tx.shutdown()
	}
	for _, tx := range servers {
		tx.shutdown()
	}
	l.timers.close()
	// The transactions have ended, and their handlers' contexts with
	// them: endContexts has nothing left to do, and must not outlive
	// Close.
	if !l.unwatch() {
		<-l.contextsEnded
	}
	l.cancel()
	l.handlers.Wait()
	l.workers.stop()
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
