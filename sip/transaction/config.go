package transaction

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// RFC 3261 §17 and RFC 6026 default timer values.
const (
	// DefaultT1 is the RTT estimate.
	DefaultT1 = 500 * time.Millisecond
	// DefaultT2 is the maximum retransmission interval of non-INVITE
	// requests and INVITE responses.
	DefaultT2 = 4 * time.Second
	// DefaultT4 is the maximum time a message stays in the network.
	DefaultT4 = 5 * time.Second
	// DefaultTimerD is Timer D on unreliable transports.
	DefaultTimerD = 32 * time.Second
	// DefaultTryingDelay is how long an INVITE server transaction waits for
	// the TU before it sends 100 Trying itself (§17.2.1).
	DefaultTryingDelay = 200 * time.Millisecond
	// DefaultMaxServerTransactions bounds the server transactions.
	DefaultMaxServerTransactions = 10000
	// DefaultMaxClientTransactions bounds the client transactions.
	DefaultMaxClientTransactions = 20000
	// DefaultRetryAfter is the Retry-After of the 503 sent beyond the
	// bound.
	DefaultRetryAfter = 5 * time.Second
)

// Config tunes a Layer. The zero value gives the RFC 3261 defaults, the real
// clock and no logging.
//
// Timers that set a retransmission interval or a timeout (T1, T2, T4, A, B,
// E, F, G, H, L, M) take their default when zero or negative. The "linger"
// timers D, I, J and K, which absorb retransmissions after a final
// response, apply to unreliable transports only: on reliable ones they are
// always zero, as RFC 3261 says. For them zero means the default and a
// negative value means no lingering at all.
type Config struct {
	// T1 is the RTT estimate, 500ms by default. The defaults of A, B, E, F,
	// G, H, J, L and M derive from it.
	T1 time.Duration
	// T2 caps the retransmission interval of non-INVITE requests (E) and
	// INVITE final responses (G); 4s by default.
	T2 time.Duration
	// T4 is the maximum duration a message remains in the network; 5s by
	// default. I and K default to it.
	T4 time.Duration

	// TimerA is the first INVITE request retransmission interval (T1).
	TimerA time.Duration
	// TimerB is the INVITE client transaction timeout (64*T1).
	TimerB time.Duration
	// TimerD is the wait for response retransmissions in the Completed
	// state of an INVITE client transaction (32s; 0 on reliable transports).
	TimerD time.Duration
	// TimerE is the first non-INVITE request retransmission interval (T1).
	TimerE time.Duration
	// TimerF is the non-INVITE client transaction timeout (64*T1).
	TimerF time.Duration
	// ForwardTimerF is the timeout of the non-INVITE client transactions
	// started with a Forwarding context, those of a proxy (48*T1, and at
	// most TimerF): see Forwarding.
	ForwardTimerF time.Duration
	// TimerG is the first INVITE final response retransmission interval
	// (T1).
	TimerG time.Duration
	// TimerH is the wait for the ACK of an INVITE non-2xx final response
	// (64*T1).
	TimerH time.Duration
	// TimerI is the wait for ACK retransmissions in the Confirmed state (T4;
	// 0 on reliable transports).
	TimerI time.Duration
	// TimerJ is the wait for request retransmissions in the Completed state
	// of a non-INVITE server transaction (64*T1; 0 on reliable transports).
	TimerJ time.Duration
	// TimerK is the wait for response retransmissions in the Completed
	// state of a non-INVITE client transaction (T4; 0 on reliable
	// transports).
	TimerK time.Duration
	// TimerL is the wait in the Accepted state of an INVITE server
	// transaction (RFC 6026, 64*T1).
	TimerL time.Duration
	// TimerM is the wait in the Accepted state of an INVITE client
	// transaction (RFC 6026, 64*T1).
	TimerM time.Duration

	// TryingDelay is how long an INVITE server transaction waits for a
	// response from the TU before sending 100 Trying itself (§17.2.1). Zero
	// means 200ms; negative means at once, before the handler runs.
	TryingDelay time.Duration

	// MaxServerTransactions bounds the server transactions kept at once,
	// in every state: those whose handler runs and those answered and
	// kept to absorb retransmissions (Timers I, J, H, L). A transaction
	// holds its place until it has terminated and its handler has
	// returned; a handler of an ACK without transaction holds one while
	// it runs. So it bounds the handler goroutines too. A request that
	// holds more than 4 KiB (text and parsed structure) takes a place per
	// 4 KiB, so that the bound caps memory too. When it is
	// reached, the oldest answered transaction that only absorbs
	// retransmissions is ended early to make room; when there is none,
	// the request gets 503 with Retry-After, statelessly. Sources share
	// it fairly (see bound.go): the last eighth is kept for light
	// sources, those that hold fewer than 8, and for those under their
	// share; a source alone may use all the rest, and past it a source
	// that holds more than its share (by SourceWeight) pays with its own
	// answered transactions or is refused, not everyone. New work (a
	// request neither within a dialog nor with credentials) is refused
	// once working transactions, those not answered and kept, hold 3/4 of
	// it: the rest is kept for the work begun that ends or completes
	// calls (a BYE, an ACK, an INVITE answering a challenge). A CANCEL of a
	// pending INVITE is never refused, lest an overloaded server be
	// unable to drop calls: without a place, it is answered and
	// forgotten. Zero means 10000.
	MaxServerTransactions int
	// MaxServerTransactionsPerSource, when positive, bounds the places
	// one source (an IP address; for IPv6 its /64) holds, whatever the
	// others hold: at the bound the source's own oldest answered
	// transaction is ended early, or, when it has none, its request gets
	// 503. Zero means no bound of its own: a source is held to its fair
	// share only when others compete (MaxServerTransactions).
	MaxServerTransactionsPerSource int
	// SourceWeight, when set, gives the weight of a source (an IP
	// address; for IPv6 its /64) in the fair shares of
	// MaxServerTransactions: a trusted trunk, which carries the calls of
	// many, may hold ten times what a phone holds, say. It is asked when
	// a source that holds nothing starts a transaction, with Layer's lock
	// held: it must be quick and must not call back into the Layer. Nil,
	// or a weight below 1, means 1; weights are capped at 65536.
	SourceWeight func(src netip.Addr) int
	// MaxClientTransactions bounds the client transactions. At the
	// bound the oldest that only lingers (has its final response and
	// waits for Timer D, K or M to absorb retransmissions of it) is ended
	// early to make room; when all are working (no final response yet)
	// Request fails with ErrTooManyTransactions, except for a CANCEL, of
	// which there is at most one per INVITE. Zero means 20000.
	MaxClientTransactions int
	// RetryAfter is the Retry-After of that 503; zero means 5s. It is sent
	// in whole seconds, at least 1.
	RetryAfter time.Duration
	// OverloadDelay is the requests' mean wait past which the layer is
	// overloaded (Layer.Overloaded): their handlers' wait for a CPU, and
	// QueueDelay. Zero means 100ms, negative never overloaded.
	OverloadDelay time.Duration
	// QueueDelay, when set, says how long requests wait before they reach
	// the layer: transport.Layer.QueueDelay, the wait for a worker. A
	// queue that grows hides the overload from the handlers' wait. It is
	// called often: it must be cheap.
	QueueDelay func() time.Duration
	// QueueLen, when set, says how many requests wait below the layer:
	// transport.Layer.QueueLen. With it the layer never sheds while
	// fewer than 64 requests wait there and for their handlers to start,
	// whatever the waits: a wait with no backlog of ours behind it is the
	// host keeping the process off the CPUs, and refusing work does not
	// shorten it. Nil: no such floor. It is called often: it must be
	// cheap.
	QueueLen func() int

	// Clock runs the timers; nil means the real clock.
	Clock clock.Clock
	// Logger receives debug and warning events; nil discards them.
	Logger *slog.Logger

	// OnStrayResponse, when set, receives every response that matches no
	// client transaction: a proxy forwards it statelessly (RFC 3261 §16.7).
	// It is called in the goroutine that called HandleMessage and must not
	// block. When nil, stray responses are dropped.
	// ctx ends when the Layer closes.
	OnStrayResponse func(ctx context.Context, res *sip.Response)

	// Admit, when set, is asked about each request that would start a
	// server transaction (not about ACKs, CANCELs and retransmissions),
	// before anything is kept for it: a block list or a rate limiter
	// refuses a source there without costing a transaction. It returns
	// nil and false to let the request in; a response to answer it with
	// statelessly (the layer adds a To tag when it has none); or drop
	// true to discard it unanswered. waited is how long req waited below
	// the layer (HandleWaited; zero through HandleMessage), for
	// Layer.Overloaded. It runs in the goroutine that called
	// HandleMessage and must not block.
	Admit func(req *sip.Request, waited time.Duration) (reject *sip.Response, drop bool)

	// OnFinal, when set, learns the outcome of every transaction once: the
	// first final status a server transaction sent, or the first final
	// status a client transaction delivered to its TU (408 and 503 when it
	// synthesized them). server tells which side. Metrics count with it.
	// It is called with the transaction's lock held and must neither block
	// nor call back into the Layer.
	OnFinal func(server bool, method string, status int)
}

// timers are the resolved durations of a Config.
type timers struct {
	t1, t2, t4                   time.Duration
	a, b, d, e, f, g, h, i, j, k time.Duration
	l, m                         time.Duration
	fwdF                         time.Duration // F of a Forwarding transaction
	trying                       time.Duration // < 0: at once
}

// orDefault returns v, or def when v is not positive.
func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// linger resolves D, I, J and K: zero is the default, negative is none.
func linger(v, def time.Duration) time.Duration {
	switch {
	case v > 0:
		return v
	case v < 0:
		return 0
	}
	return def
}

func (c *Config) timers() timers {
	var t timers
	t.t1 = orDefault(c.T1, DefaultT1)
	t.t2 = orDefault(c.T2, DefaultT2)
	t.t4 = orDefault(c.T4, DefaultT4)
	t.a = orDefault(c.TimerA, t.t1)
	t.b = orDefault(c.TimerB, 64*t.t1)
	t.d = linger(c.TimerD, DefaultTimerD)
	t.e = orDefault(c.TimerE, t.t1)
	t.f = orDefault(c.TimerF, 64*t.t1)
	t.fwdF = min(orDefault(c.ForwardTimerF, 48*t.t1), t.f)
	t.g = orDefault(c.TimerG, t.t1)
	t.h = orDefault(c.TimerH, 64*t.t1)
	t.i = linger(c.TimerI, t.t4)
	t.j = linger(c.TimerJ, 64*t.t1)
	t.k = linger(c.TimerK, t.t4)
	t.l = orDefault(c.TimerL, 64*t.t1)
	t.m = orDefault(c.TimerM, 64*t.t1)
	t.trying = c.TryingDelay
	if t.trying == 0 {
		t.trying = DefaultTryingDelay
	}
	return t
}

// unreliable returns d on an unreliable transport and 0 on a reliable one.
func unreliable(d time.Duration, reliable bool) time.Duration {
	if reliable {
		return 0
	}
	return d
}
