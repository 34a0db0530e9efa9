package transaction

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// answering is a Layer on a fake clock whose Handler answers every request
// at once with the status that code gives, then returns: the transactions
// are left lingering (Completed) or ended, as the status asks.
type answering struct {
	t   *testing.T
	clk *clock.Fake
	net *netRec
	l   *Layer
}

func newAnswering(t *testing.T, cfg Config, code func(req *sip.Request) int) *answering {
	a := &answering{t: t, clk: clock.NewFake(epoch)}
	a.net = newNetRec(a.clk)
	cfg.Clock = a.clk
	a.l = New(context.Background(), a.net, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		if tx == nil {
			return
		}
		if err := tx.Respond(response(req, code(req), "uas")); err != nil {
			t.Errorf("respond: %v", err)
		}
	}), cfg)
	t.Cleanup(func() { a.l.Close() })
	return a
}

// send delivers a request from src and waits for its answer to be sent.
// It returns the answer.
func (a *answering) send(s msgSpec) sentMsg {
	a.t.Helper()
	a.l.HandleMessage(s.req(a.t))
	sent := a.net.wait(a.t, 1)
	if len(sent) != 1 {
		a.t.Fatalf("sent %s, want one answer", labels(sent))
	}
	return sent[0]
}

// settled waits until no handler runs.
func (a *answering) settled() Stats {
	a.t.Helper()
	eventually(a.t, "handlers returned", func() bool { return a.l.Stats().Handlers == 0 })
	return a.l.Stats()
}

// from returns a UDP address of host ip.
func from(ip string) sip.Addr {
	return sip.Addr{Transport: sip.UDP, AddrPort: netip.AddrPortFrom(netip.MustParseAddr(ip), 5060)}
}

func spec(method string, n int, src sip.Addr) msgSpec {
	return msgSpec{method: method, branch: fmt.Sprintf("z9hG4bK%s%d", src.AddrPort.Addr(), n),
		sentBy: src.AddrPort.String(), src: src}
}

// begun is spec for a request within a dialog (a To tag): work begun,
// which the places kept from new work let in (newWorkFull), so that the
// tests of the shares and of the bound itself are not stopped short by
// them.
func begun(method string, n int, src sip.Addr) msgSpec {
	s := spec(method, n, src)
	s.toTag = "tt1"
	return s
}

// TestRefusalEndsAtOnce: a final response >= 300 to a non-INVITE request
// ends its transaction at once, over UDP too, instead of keeping it for
// Timer J; a retransmission is then handled anew. A 2xx still stays for
// Timer J and absorbs retransmissions.
func TestRefusalEndsAtOnce(t *testing.T) {
	status := 401
	a := newAnswering(t, Config{}, func(*sip.Request) int { return status })
	reg := spec("REGISTER", 1, phoneUDP)
	if got := a.send(reg); got.String() != "401 REGISTER" {
		t.Fatalf("sent %s", got)
	}
	if st := a.settled(); st.ServerTransactions != 0 || st.Pending != 0 || st.Sources != 0 {
		t.Fatalf("after a 401: %+v, want nothing kept", st)
	}
	// The retransmission reaches the handler again, and is answered again.
	status = 403
	if got := a.send(reg); got.String() != "403 REGISTER" {
		t.Fatalf("retransmission answered with %s, want a new answer (403)", got)
	}

	status = 200
	opt := spec("OPTIONS", 2, phoneUDP)
	a.send(opt)
	if st := a.settled(); st.ServerTransactions != 1 || st.Pending != 1 {
		t.Fatalf("after a 200: %+v, want the transaction kept for Timer J", st)
	}
	status = 500
	if got := a.send(opt); got.String() != "200 OPTIONS" {
		t.Fatalf("retransmission answered with %s, want the 200 again", got)
	}
	a.clk.Advance(64 * DefaultT1)
	if st := a.l.Stats(); st.ServerTransactions != 0 || st.Pending != 0 {
		t.Fatalf("after Timer J: %+v", st)
	}
	// An INVITE refused keeps RFC 3261 behaviour: Completed until its
	// ACK, retransmitting the final response.
	status = 486
	a.send(spec("INVITE", 3, phoneUDP))
	if st := a.settled(); st.ServerTransactions != 1 {
		t.Fatalf("INVITE answered 486: %+v, want it kept for its ACK", st)
	}
}

// TestServerBoundEveryState: answered transactions kept for Timer J count
// against MaxServerTransactions. At the bound the oldest of them is ended
// to make room (its Done closes, Stats.Evicted counts it); when none is
// answered, new requests get 503.
func TestServerBoundEveryState(t *testing.T) {
	block := make(chan struct{})
	clk := clock.NewFake(epoch)
	net := newNetRec(clk)
	txs := make(chan *ServerTx, 16)
	next := func() *ServerTx {
		t.Helper()
		select {
		case tx := <-txs:
			return tx
		case <-time.After(waitLimit):
			t.Fatal("timed out waiting for the handler")
		}
		return nil
	}
	l := New(context.Background(), net, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		if tx == nil {
			return
		}
		txs <- tx
		if req.Method == "INFO" {
			<-block // holds its place while it runs
		}
		tx.Respond(response(req, 200, "uas"))
	}), Config{Clock: clk, MaxServerTransactions: 3, MaxServerTransactionsPerSource: 3})
	t.Cleanup(func() { close(block); l.Close() })

	// Three answered OPTIONS from three sources fill the table.
	var first *ServerTx
	for i := range 3 {
		src := from(fmt.Sprintf("192.0.2.%d", 10+i))
		l.HandleMessage(spec("OPTIONS", i, src).req(t))
		tx := next()
		if i == 0 {
			first = tx
		}
		net.wait(t, 1)
		// Listed as lingering once its handler returned: in this order,
		// oldest first, before the next request starts.
		eventually(t, "handler returned", func() bool { return l.Stats().Handlers == 0 })
	}
	if st := l.Stats(); st.ServerTransactions != 3 || st.Pending != 3 {
		t.Fatalf("stats %+v, want 3 lingering transactions", st)
	}
	// A fourth request ends the oldest to make room.
	l.HandleMessage(spec("INFO", 0, from("192.0.2.20")).req(t))
	next()
	if !isClosed(first.Done()) || first.State() != StateTerminated {
		t.Fatalf("oldest transaction %v, want ended early", first.State())
	}
	if st := l.Stats(); st.Evicted != 1 || st.ServerTransactions != 3 || st.Pending != 3 {
		t.Fatalf("stats %+v", st)
	}
	// Its retransmission starts a new transaction (no longer absorbed),
	// which ends the next oldest, .11's.
	l.HandleMessage(spec("OPTIONS", 0, from("192.0.2.10")).req(t))
	next()
	net.wait(t, 1)
	eventually(t, "the OPTIONS handler returned", func() bool { return l.Stats().Handlers == 1 })
	// One INFO runs, two OPTIONS linger: two more INFOs end them; a
	// fourth INFO finds nothing to end and gets 503.
	l.HandleMessage(spec("INFO", 1, from("192.0.2.21")).req(t))
	next()
	l.HandleMessage(spec("INFO", 2, from("192.0.2.22")).req(t))
	next()
	eventually(t, "three handlers", func() bool { return l.Stats().Handlers == 3 })
	l.HandleMessage(spec("INFO", 3, from("192.0.2.23")).req(t))
	sent := net.wait(t, 1)
	if labels(sent) != "503 INFO" {
		t.Fatalf("sent %s, want 503 INFO", labels(sent))
	}
	if st := l.Stats(); st.Rejected != 1 || st.Pending != 3 || st.Handlers != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestServerBoundPerSource: a source at MaxServerTransactionsPerSource
// ends its own oldest answered transaction to make room, or gets 503 when
// all of its are pending, while other sources are still served.
func TestServerBoundPerSource(t *testing.T) {
	h := newHarness(t, Config{MaxServerTransactions: 100, MaxServerTransactionsPerSource: 2, TryingDelay: time.Hour})
	flood, other := from("192.0.2.66"), from("192.0.2.77")
	h.l.HandleMessage(spec("OPTIONS", 1, flood).req(t))
	a := h.serverTx()
	h.l.HandleMessage(spec("OPTIONS", 2, flood).req(t))
	h.serverTx()
	h.l.HandleMessage(spec("OPTIONS", 3, flood).req(t))
	if got := labels(h.net.wait(t, 1)); got != "503 OPTIONS" {
		t.Fatalf("third request of the source: sent %s, want 503", got)
	}
	h.l.HandleMessage(spec("OPTIONS", 1, other).req(t))
	h.serverTx() // another source is served
	if st := h.l.Stats(); st.Rejected != 1 || st.Sources != 2 || st.Pending != 3 {
		t.Fatalf("stats %+v", st)
	}
	// a is answered and ends with Timer J; the harness's handler, which
	// waits for that, returns; the place comes back to the source.
	if err := a.Respond(response(a.Request(), 200, "x")); err != nil {
		t.Fatal(err)
	}
	h.net.take()
	h.clk.Advance(64 * DefaultT1)
	eventually(t, "place back", func() bool { return h.l.Stats().Pending == 2 })
	h.l.HandleMessage(spec("OPTIONS", 4, flood).req(t))
	h.serverTx()
}

// TestServerBoundPerSourceEvictsOwn: at its bound a source makes room from
// its own answered transactions, not from others'.
func TestServerBoundPerSourceEvictsOwn(t *testing.T) {
	a := newAnswering(t, Config{MaxServerTransactions: 100, MaxServerTransactionsPerSource: 2},
		func(*sip.Request) int { return 200 })
	flood, other := from("192.0.2.66"), from("192.0.2.77")
	a.send(spec("OPTIONS", 1, other))
	for i := range 5 {
		a.send(spec("OPTIONS", i, flood))
	}
	st := a.settled()
	if st.Evicted != 3 || st.ServerTransactions != 3 || st.Rejected != 0 {
		t.Fatalf("stats %+v, want the source's 3 oldest ended, the other source's kept", st)
	}
	// The other source's transaction still absorbs its retransmission.
	if got := a.send(spec("OPTIONS", 1, other)); got.String() != "200 OPTIONS" {
		t.Fatalf("sent %s", got)
	}
	if st := a.l.Stats(); st.Evicted != 3 {
		t.Fatalf("the other source's transaction was ended: %+v", st)
	}
}

// TestServerBoundReserve: once the places left are the reserve (the last
// eighth), a source that holds lightLoad or more gets 503, while a light
// source is still served up to the bound.
func TestServerBoundReserve(t *testing.T) {
	h := newHarness(t, Config{MaxServerTransactions: 80, MaxServerTransactionsPerSource: 80, TryingDelay: time.Hour})
	// Seven heavy sources take 10 each: 70, the bound less its reserve.
	n := 0
	for s := range 7 {
		src := from(fmt.Sprintf("192.0.2.%d", 100+s))
		for range 10 {
			n++
			h.l.HandleMessage(begun("OPTIONS", n, src).req(t))
			h.serverTx()
		}
	}
	if st := h.l.Stats(); st.Pending != 70 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
	h.l.HandleMessage(begun("OPTIONS", 999, from("192.0.2.100")).req(t))
	if got := labels(h.net.wait(t, 1)); got != "503 OPTIONS" {
		t.Fatalf("heavy source in the reserve: sent %s, want 503", got)
	}
	// Light sources get the reserve, up to the bound.
	for i := range 10 {
		h.l.HandleMessage(begun("OPTIONS", 1, from(fmt.Sprintf("192.0.2.%d", 200+i))).req(t))
		h.serverTx()
	}
	h.l.HandleMessage(begun("OPTIONS", 1, from("192.0.2.250")).req(t))
	if got := labels(h.net.wait(t, 1)); got != "503 OPTIONS" {
		t.Fatalf("at the bound: sent %s, want 503", got)
	}
	if st := h.l.Stats(); st.Pending != 80 || st.Rejected != 2 || st.Sources != 17 {
		t.Fatalf("stats %+v", st)
	}
}

// TestServerBoundKeepsRoomForBegunWork: new work stops where working
// transactions hold 3/4 of the bound, so that a BYE within a dialog, or an
// INVITE answering a challenge, still gets a transaction when new INVITEs
// fill the table; work begun is bounded all the same, by the shares and
// by the bound.
func TestServerBoundKeepsRoomForBegunWork(t *testing.T) {
	h := newHarness(t, Config{MaxServerTransactions: 80, TryingDelay: time.Hour})
	caller := from("192.0.2.10")
	// fill sends requests that mk makes until one is refused, and checks
	// that the places then held are want.
	n := 0
	fill := func(mk func(method string, n int, src sip.Addr) msgSpec, method string, src sip.Addr, want int) {
		t.Helper()
		for ; ; n++ {
			h.l.HandleMessage(mk(method, n, src).req(t))
			got := h.net.take()
			if len(got) == 0 {
				h.serverTx()
				continue
			}
			if labels(got) != "503 "+method {
				t.Fatalf("%s %d: sent %s", method, n, labels(got))
			}
			n++
			break
		}
		if st := h.l.Stats(); st.Pending != want {
			t.Fatalf("%s refused at %d places (%+v), want %d", method, st.Pending, st, want)
		}
	}
	// New work stops at 3/4 of the bound.
	fill(spec, "INVITE", caller, 60)
	h.l.HandleMessage(begun("BYE", n, caller).req(t))
	if got := h.net.take(); len(got) > 0 {
		t.Fatalf("a BYE with the bound 3/4 full of new work: sent %s, want it handled", labels(got))
	}
	h.serverTx()
	auth := spec("INVITE", n+1, caller)
	auth.extra = "Proxy-Authorization: Digest username=\"alice\"\r\n"
	h.l.HandleMessage(auth.req(t))
	h.serverTx()
	n += 2
	// A flood of BYEs from the one source stops at its shared part (7/8),
	// another source's at the bound.
	fill(begun, "BYE", caller, 70)
	fill(begun, "BYE", from("192.0.2.20"), 80)
}

// TestSourceOfIPv6: IPv6 sources count per /64; IPv4 per address, mapped
// or not.
func TestSourceOfIPv6(t *testing.T) {
	a := sourceOf(sip.Addr{AddrPort: netip.MustParseAddrPort("[2001:db8:1:2:aaaa::1]:5060")})
	b := sourceOf(sip.Addr{AddrPort: netip.MustParseAddrPort("[2001:db8:1:2:bbbb::9%eth0]:5070")})
	c := sourceOf(sip.Addr{AddrPort: netip.MustParseAddrPort("[2001:db8:1:3::1]:5060")})
	if a != b || a == c {
		t.Fatalf("sources %v %v %v: want the first two equal (same /64), the third apart", a, b, c)
	}
	v4 := sourceOf(sip.Addr{AddrPort: netip.MustParseAddrPort("192.0.2.1:5060")})
	mapped := sourceOf(sip.Addr{AddrPort: netip.MustParseAddrPort("[::ffff:192.0.2.1]:9")})
	if v4 != mapped || v4 != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("IPv4 %v, mapped %v", v4, mapped)
	}
}

// TestAdmit: Config.Admit decides before any transaction exists: a
// response is sent statelessly (with a To tag), a drop sends nothing, and
// neither reaches the handler or keeps anything. ACKs, CANCELs and
// retransmissions are not asked.
func TestAdmit(t *testing.T) {
	blocked, dropped := from("192.0.2.66"), from("192.0.2.67")
	var asked []string
	h := newHarness(t, Config{TryingDelay: time.Hour, Admit: func(req *sip.Request, _ time.Duration) (*sip.Response, bool) {
		asked = append(asked, req.Method)
		switch req.Source.AddrPort.Addr() {
		case blocked.AddrPort.Addr():
			res := sip.NewResponse(req, 403, "Go Away")
			res.Set("Retry-After", "300")
			return res, false
		case dropped.AddrPort.Addr():
			return nil, true
		}
		return nil, false
	}})
	h.l.HandleMessage(spec("REGISTER", 1, blocked).req(t))
	sent := h.net.take()
	if labels(sent) != "403 REGISTER" {
		t.Fatalf("blocked source: sent %s", labels(sent))
	}
	if res := sent[0].msg.(*sip.Response); res.To().Tag() == "" || res.Get("Retry-After") != "300" || sent[0].dst != blocked {
		t.Fatalf("refusal: %s to %v", res, sent[0].dst)
	}
	h.l.HandleMessage(spec("REGISTER", 2, dropped).req(t))
	if sent := h.net.take(); len(sent) != 0 {
		t.Fatalf("dropped source: sent %s", labels(sent))
	}
	h.noServerTx()
	if st := h.l.Stats(); st.Refused != 1 || st.Dropped != 1 || st.ServerTransactions != 0 || st.Pending != 0 || st.Sources != 0 {
		t.Fatalf("stats %+v", st)
	}

	// Admitted: an INVITE; its retransmission, CANCEL and an ACK of it
	// are not asked about.
	inv := spec("INVITE", 3, phoneUDP)
	h.l.HandleMessage(inv.req(t))
	tx := h.serverTx()
	h.l.HandleMessage(inv.req(t))
	cancel := inv
	cancel.method = "CANCEL"
	h.l.HandleMessage(cancel.req(t))
	tx.Respond(response(tx.Request(), 487, "uas"))
	ack := inv
	ack.method, ack.toTag = "ACK", "uas"
	h.l.HandleMessage(ack.req(t))
	if fmt.Sprint(asked) != "[REGISTER REGISTER INVITE]" {
		t.Fatalf("Admit asked about %v", asked)
	}
}

// TestCancelWithoutPlace: a CANCEL of a pending INVITE is answered even
// when the bound leaves it no place; its transaction then ends at once.
func TestCancelWithoutPlace(t *testing.T) {
	h := newHarness(t, Config{MaxServerTransactions: 1, TryingDelay: time.Hour})
	inv := spec("INVITE", 1, phoneUDP)
	h.l.HandleMessage(inv.req(t))
	tx := h.serverTx()
	cancel := inv
	cancel.method = "CANCEL"
	h.l.HandleMessage(cancel.req(t))
	if got := labels(h.net.take()); got != "200 CANCEL" {
		t.Fatalf("sent %s", got)
	}
	if !isClosed(tx.Canceled()) {
		t.Fatal("not canceled")
	}
	if st := h.l.Stats(); st.ServerTransactions != 1 || st.Pending != 1 {
		t.Fatalf("stats %+v, want only the INVITE kept", st)
	}
}

// TestClientBound: beyond MaxClientTransactions Request fails with
// ErrTooManyTransactions, but a CANCEL still goes out.
func TestClientBound(t *testing.T) {
	h := newHarness(t, Config{MaxClientTransactions: 2})
	inv := mustRequest(t, h, "INVITE", peerUDP)
	mustRequest(t, h, "OPTIONS", peerUDP)
	_, err := h.l.Request(context.Background(), clientReq(t, "OPTIONS", sip.UDP), peerUDP)
	assertErr(t, err, ErrTooManyTransactions)
	if st := h.l.Stats(); st.ClientTransactions != 2 || st.ClientRejected != 1 {
		t.Fatalf("stats %+v", st)
	}
	h.net.take()
	h.l.HandleMessage(wire(t, response(inv.Request(), 180, "uas"), peerUDP))
	if err := inv.Cancel(); err != nil {
		t.Fatal(err)
	}
	if got := labels(h.net.take()); got != "CANCEL" {
		t.Fatalf("sent %s, want the CANCEL beyond the bound", got)
	}
	if st := h.l.Stats(); st.ClientTransactions != 3 {
		t.Fatalf("stats %+v", st)
	}
	// Room comes back when transactions end: the OPTIONS and the CANCEL
	// time out (Timer F); the INVITE, in Proceeding, waits for its TU.
	h.clk.Advance(64 * DefaultT1)
	if st := h.l.Stats(); st.ClientTransactions != 1 {
		t.Fatalf("stats %+v", st)
	}
	mustRequest(t, h, "OPTIONS", peerUDP)
}

// answer delivers to tx the response code to req, which tx sent, as
// the network would.
func answer(t testing.TB, l *Layer, req *sip.Request, code int) {
	t.Helper()
	l.HandleMessage(wire(t, response(req, code, "uas"), peerUDP))
}

// lingeringClients starts a client transaction for each method, over
// UDP, and answers it with its code: each then lingers (Timer D, K or
// M). It returns them with their requests.
func lingeringClients(t testing.TB, h *harness, calls ...call) ([]*ClientTx, []*sip.Request) {
	t.Helper()
	var txs []*ClientTx
	var reqs []*sip.Request
	for _, c := range calls {
		tx := mustRequest(t, h, c.method, peerUDP)
		req := tx.Request()
		answer(t, h.l, req, c.code)
		if st := tx.State(); st != StateCompleted && st != StateAccepted {
			t.Fatalf("%s answered %d: state %s, want it lingering", c.method, c.code, st)
		}
		txs, reqs = append(txs, tx), append(reqs, req)
	}
	return txs, reqs
}

// call is a client transaction of lingeringClients: its method and the
// final response it gets.
type call struct {
	method string
	code   int
}

// TestClientBoundEvictsLingering: with MaxClientTransactions
// transactions that have their final response and only linger (an
// INVITE in Accepted, a BYE and an INVITE in Completed), a new Request
// succeeds: the oldest lingering one ends early, quietly (no error; its
// Responses had the final response), and a retransmission of its final
// response then goes to OnStrayResponse. Counted, the lingering ones
// refused every new request at 3,200 calls a second.
func TestClientBoundEvictsLingering(t *testing.T) {
	strays := make(chan *sip.Response, 8)
	h := newHarness(t, Config{MaxClientTransactions: 3, OnStrayResponse: func(_ context.Context, res *sip.Response) { strays <- res }})
	txs, reqs := lingeringClients(t, h, call{"INVITE", 200}, call{"BYE", 200}, call{"INVITE", 486})
	if st := h.l.Stats(); st.ClientTransactions != 3 || st.ClientLingering != 3 {
		t.Fatalf("stats %+v, want 3 lingering", st)
	}
	h.net.take()

	fresh := mustRequest(t, h, "BYE", peerUDP)
	if !isClosed(txs[0].Done()) {
		t.Fatal("the oldest lingering transaction did not end to make room")
	}
	if err := txs[0].Err(); err != nil {
		t.Errorf("evicted: Err %v, want nil", err)
	}
	if got, closed := drain(txs[0]); strings.Join(got, ",") != "200" || !closed {
		t.Errorf("evicted INVITE delivered %v (closed %v), want its 200 and the end", got, closed)
	}
	for i, tx := range txs[1:] {
		if isClosed(tx.Done()) {
			t.Errorf("lingering transaction %d ended too", i+1)
		}
	}
	if st := h.l.Stats(); st.ClientTransactions != 3 || st.ClientLingering != 2 || st.ClientEvicted != 1 || st.ClientRejected != 0 {
		t.Fatalf("stats %+v", st)
	}

	// The evicted INVITE's 2xx, retransmitted, matches nothing now.
	answer(t, h.l, reqs[0], 200)
	select {
	case res := <-strays:
		if res.StatusCode != 200 || res.CSeq().Method != sip.MethodInvite {
			t.Errorf("stray %d %s", res.StatusCode, res.CSeq().Method)
		}
	default:
		t.Fatal("the retransmitted 2xx of the evicted transaction did not reach OnStrayResponse")
	}
	// A lingering one still absorbs its retransmission.
	answer(t, h.l, reqs[1], 200)
	if len(strays) != 0 {
		t.Error("a retransmission to a lingering transaction went astray")
	}

	// Next the BYE, oldest now, makes room; the new BYE, working, is kept.
	mustRequest(t, h, "OPTIONS", peerUDP)
	if !isClosed(txs[1].Done()) || isClosed(txs[2].Done()) || isClosed(fresh.Done()) {
		t.Fatal("evicted out of order")
	}
	answer(t, h.l, reqs[1], 200)
	if len(strays) != 1 {
		t.Error("the evicted BYE's retransmitted 200 did not go astray")
	}
	if got := labels(h.net.take()); got != "BYE,OPTIONS" {
		t.Errorf("sent %s, want only the new requests", got)
	}
	// The rest end on their timers as usual.
	h.clk.Advance(64 * DefaultT1)
	if st := h.l.Stats(); st.ClientTransactions != 0 || st.ClientLingering != 0 {
		t.Fatalf("stats %+v after the timers", st)
	}
}

// TestClientBoundWorking: the transactions still working (without a
// final response) are the hard bound: once the lingering ones have made
// room, a Request beyond MaxClientTransactions working ones fails, and
// ends none of them.
func TestClientBoundWorking(t *testing.T) {
	h := newHarness(t, Config{MaxClientTransactions: 3})
	lingering, _ := lingeringClients(t, h, call{"BYE", 200})
	working := []*ClientTx{mustRequest(t, h, "BYE", peerUDP), mustRequest(t, h, "INVITE", peerUDP)}
	working = append(working, mustRequest(t, h, "OPTIONS", peerUDP))
	if !isClosed(lingering[0].Done()) {
		t.Fatal("the lingering transaction did not make room")
	}
	_, err := h.l.Request(context.Background(), clientReq(t, "BYE", sip.UDP), peerUDP)
	assertErr(t, err, ErrTooManyTransactions)
	for _, tx := range working {
		if isClosed(tx.Done()) {
			t.Fatalf("a working %s ended", tx.key.method)
		}
	}
	if st := h.l.Stats(); st.ClientTransactions != 3 || st.ClientLingering != 0 || st.ClientRejected != 1 || st.ClientEvicted != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestClientLingerReliable: over a reliable transport a transaction ends
// at its final response (Timers D and K are zero): it never lingers.
func TestClientLingerReliable(t *testing.T) {
	h := newHarness(t, Config{MaxClientTransactions: 3})
	tx := mustRequest(t, h, "BYE", peerTCP)
	h.l.HandleMessage(wire(t, response(tx.Request(), 200, "uas"), peerTCP))
	if !isClosed(tx.Done()) {
		t.Fatal("not ended at its final response")
	}
	if st := h.l.Stats(); st.ClientTransactions != 0 || st.ClientLingering != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestClientBoundConcurrent: requests, answers, timers and evictions at
// once keep the counts whole (run with -race).
func TestClientBoundConcurrent(t *testing.T) {
	const maxClient, workers, each = 16, 4, 200
	h := newHarness(t, Config{MaxClientTransactions: maxClient})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				tx, err := h.l.Request(context.Background(), clientReq(t, "BYE", sip.UDP), peerUDP)
				if err != nil {
					if !errorsIs(err, ErrTooManyTransactions) {
						t.Error(err)
					}
					continue
				}
				if (w+i)%3 != 0 { // a third stay working until Timer F
					answer(t, h.l, tx.Request(), 200)
				}
			}
		})
	}
	for range each / 10 {
		h.clk.Advance(DefaultT1)
	}
	wg.Wait()
	// The unanswered ones work until Timer F (64*T1), past the time
	// advanced so far: they fill the bound, and the lingering ones made
	// room for them.
	if st := h.l.Stats(); st.ClientTransactions != maxClient || st.ClientLingering != 0 || st.ClientRejected == 0 {
		t.Fatalf("stats %+v, want the bound full of working transactions", st)
	}
	h.clk.Advance(64 * DefaultT1)
	if st := h.l.Stats(); st.ClientTransactions != 0 || st.ClientLingering != 0 {
		t.Fatalf("stats %+v after the timers, want none", st)
	}
}

// TestServerBoundLargeRequests: a request takes a place per 4 KiB it
// holds, so that the bound caps memory, not only a count.
func TestServerBoundLargeRequests(t *testing.T) {
	h := newHarness(t, Config{MaxServerTransactions: 40, MaxServerTransactionsPerSource: 40, TryingDelay: time.Hour})
	big := func(n int) *sip.Request {
		s := begun("MESSAGE", n, from(fmt.Sprintf("192.0.2.%d", n)))
		s.body = strings.Repeat("x", 20<<10)
		return s.req(t)
	}
	w := weight(big(0), 1000)
	if w < 5 || w > 7 {
		t.Fatalf("a 20 KiB request weighs %d places, want about 6", w)
	}
	if small := weight(spec("OPTIONS", 0, phoneUDP).req(t), 1000); small != 1 {
		t.Fatalf("a small request weighs %d places, want 1", small)
	}
	n := 0
	for ; (n+1)*w <= 40; n++ {
		h.l.HandleMessage(big(n))
		h.serverTx()
	}
	if st := h.l.Stats(); st.Pending != n*w {
		t.Fatalf("places %d, want %d", st.Pending, n*w)
	}
	h.l.HandleMessage(big(n))
	if got := labels(h.net.wait(t, 1)); got != "503 MESSAGE" {
		t.Fatalf("sent %s, want 503 beyond the bound", got)
	}
	// A weight never passes the per-source bound, or the request could
	// never get in.
	if got := weight(big(0), 3); got != 3 {
		t.Fatalf("weight capped at 3: %d", got)
	}
}

// TestServerBoundSourceAlone: without MaxServerTransactionsPerSource, a
// source alone may hold every place but the reserve, the way a trunk or a
// load balancer sends everything from one address; past that it makes room
// from its own answered transactions. With the old fixed bound of a
// tenth of the table (1000 of 10000) it got 503 beyond that.
func TestServerBoundSourceAlone(t *testing.T) {
	h := newHarness(t, Config{MaxServerTransactions: 2000, TryingDelay: time.Hour})
	trunk := from("192.0.2.10")
	for i := range 1750 {
		h.l.HandleMessage(begun("OPTIONS", i, trunk).req(t))
		if got := h.net.take(); len(got) > 0 {
			t.Fatalf("request %d: sent %s, want it handled", i, labels(got))
		}
		h.serverTx()
	}
	if st := h.l.Stats(); st.Pending != 1750 || st.Rejected != 0 {
		t.Fatalf("stats %+v, want 1750 places held by the one source", st)
	}
	h.l.HandleMessage(begun("OPTIONS", 1750, trunk).req(t))
	if got := labels(h.net.wait(t, 1)); got != "503 OPTIONS" {
		t.Fatalf("past the shared part with nothing answered: sent %s, want 503", got)
	}

	// Answered, its transactions make room for its next requests.
	a := newAnswering(t, Config{MaxServerTransactions: 80}, func(*sip.Request) int { return 200 })
	for i := range 200 {
		if got := a.send(spec("OPTIONS", i, trunk)); got.String() != "200 OPTIONS" {
			t.Fatalf("request %d: sent %s", i, got)
		}
	}
	if st := a.settled(); st.Rejected != 0 || st.Pending != 70 || st.Evicted != 130 {
		t.Fatalf("stats %+v, want 70 kept, 130 ended early, none refused", st)
	}
}

// TestServerBoundWeightedShares: under contention a source that holds more
// than its share of the shared part (by Config.SourceWeight) pays with its
// own answered transactions or is refused, while a trunk of weight 10
// under its share goes on into the reserve. The flood cannot keep the
// trunk out by filling the table first.
func TestServerBoundWeightedShares(t *testing.T) {
	flood, trunk := from("192.0.2.66"), from("192.0.2.10")
	weights := func(src netip.Addr) int {
		if src == trunk.AddrPort.Addr() {
			return 10
		}
		return 1
	}
	h := newHarness(t, Config{MaxServerTransactions: 80, SourceWeight: weights, TryingDelay: time.Hour})
	for i := range 70 {
		h.l.HandleMessage(begun("OPTIONS", i, flood).req(t))
		h.serverTx()
	}
	// The trunk's share of the shared part is 70*10/11 = 63: it gets the
	// reserve, past its 8 light places.
	for i := range 10 {
		h.l.HandleMessage(begun("OPTIONS", i, trunk).req(t))
		h.serverTx()
	}
	h.l.HandleMessage(begun("OPTIONS", 70, flood).req(t))
	if got := labels(h.net.wait(t, 1)); got != "503 OPTIONS" {
		t.Fatalf("the flood over its share: sent %s, want 503", got)
	}
	if st := h.l.Stats(); st.Pending != 80 || st.Rejected != 1 || st.Sources != 2 {
		t.Fatalf("stats %+v", st)
	}

	// Without the weight the trunk is one more heavy source: 70/2 = 35
	// is its share, so it is served as long as it holds under that.
	h2 := newHarness(t, Config{MaxServerTransactions: 80, TryingDelay: time.Hour})
	for i := range 70 {
		h2.l.HandleMessage(begun("OPTIONS", i, flood).req(t))
		h2.serverTx()
	}
	for i := range 10 {
		h2.l.HandleMessage(begun("OPTIONS", i, trunk).req(t))
		h2.serverTx()
	}
	if st := h2.l.Stats(); st.Pending != 80 || st.Rejected != 0 {
		t.Fatalf("unweighted: stats %+v", st)
	}
}

// TestServerBoundAcceptedEvicted: an INVITE answered 2xx whose handler
// has returned only absorbs retransmissions in Accepted (Timer L): at the
// bound it is ended early like a Completed one, unless Respond2xx still
// retransmits its 2xx.
func TestServerBoundAcceptedEvicted(t *testing.T) {
	var stop func()
	a := newAnswering(t, Config{MaxServerTransactions: 8}, func(*sip.Request) int { return 200 })
	for i := range 8 {
		if got := a.send(spec("INVITE", i, from(fmt.Sprintf("192.0.2.%d", 100+i)))); got.String() != "200 INVITE" {
			t.Fatalf("sent %s", got)
		}
	}
	if st := a.settled(); st.ServerTransactions != 8 || st.Evicted != 0 {
		t.Fatalf("stats %+v, want the 8 INVITEs in Accepted", st)
	}
	if got := a.send(spec("INVITE", 8, from("192.0.2.200"))); got.String() != "200 INVITE" {
		t.Fatalf("at the bound: sent %s, want the oldest ended to make room", got)
	}
	if st := a.settled(); st.ServerTransactions != 8 || st.Evicted != 1 || st.Rejected != 0 {
		t.Fatalf("stats %+v, want one Accepted transaction ended early", st)
	}

	// One whose 2xx Respond2xx retransmits is kept until stop.
	h := newHarness(t, Config{MaxServerTransactions: 1})
	h.l.HandleMessage(spec("INVITE", 1, from("192.0.2.1")).req(t))
	tx := h.serverTx()
	var err error
	if stop, err = tx.Respond2xx(response(tx.Request(), 200, "uas")); err != nil {
		t.Fatal(err)
	}
	h.net.take()
	h.l.HandleMessage(spec("INVITE", 2, from("192.0.2.2")).req(t))
	if got := labels(h.net.wait(t, 1)); got != "503 INVITE" {
		t.Fatalf("while the 2xx is retransmitted: sent %s, want 503", got)
	}
	stop()
	// The harness's handler waits for the transaction's end; stop lists
	// it all the same once that handler returned, which Timer L ends.
	h.clk.Advance(64 * DefaultT1)
	eventually(t, "the place back", func() bool { return h.l.Stats().Pending == 0 })
}

// TestServerSameBranch: transactions that share a branch but not the
// sent-by or the method are distinct (RFC 3261 §17.2.3), each matching
// its own retransmissions, whichever of them ends first.
func TestServerSameBranch(t *testing.T) {
	handled := 0
	a := newAnswering(t, Config{MaxServerTransactions: 3}, func(req *sip.Request) int {
		handled++
		via, _ := req.TopVia()
		if req.Method == "MESSAGE" {
			return 204
		}
		switch via.Port {
		case 5070:
			return 210
		case 5080:
			return 403 // ends at once
		}
		return 200
	})
	x, y := from("192.0.2.1"), from("192.0.2.2")
	same := func(method string, src sip.Addr, port int) msgSpec {
		return msgSpec{method: method, branch: "z9hG4bKsame", sentBy: fmt.Sprintf("192.0.2.9:%d", port), src: src}
	}
	txs := []struct {
		s    msgSpec
		want string
	}{
		{same("OPTIONS", x, 5060), "200 OPTIONS"},
		{same("OPTIONS", y, 5070), "210 OPTIONS"},
		{same("MESSAGE", x, 5060), "204 MESSAGE"},
	}
	for _, tx := range txs {
		if got := a.send(tx.s); got.String() != tx.want {
			t.Fatalf("sent %s, want %s", got, tx.want)
		}
		a.settled() // listed as lingering in this order
	}
	// At the bound each new request ends the oldest: the last of the
	// branch's list first, then the middle one, then its first.
	for i := range txs {
		for _, tx := range txs[i:] {
			if got := a.send(tx.s); got.String() != tx.want {
				t.Fatalf("retransmission: sent %s, want %s", got, tx.want)
			}
		}
		if handled != len(txs)+i {
			t.Fatalf("%d requests handled, want %d: a retransmission was not absorbed", handled, len(txs)+i)
		}
		a.send(spec("OPTIONS", i, from("192.0.2.50")))
		if st := a.settled(); st.Evicted != uint64(i+1) || st.ServerTransactions != 3 {
			t.Fatalf("stats %+v", st)
		}
	}
	if n := len(a.l.servers); n != 3 {
		t.Fatalf("%d branches in the table, want the 3 new ones", n)
	}
	// The first of a branch's list ends before the others.
	a.send(txs[0].s)
	a.settled()
	if got := a.send(same("OPTIONS", y, 5080)); got.String() != "403 OPTIONS" {
		t.Fatalf("sent %s", got)
	}
	a.settled()
	before := handled
	if got := a.send(txs[0].s); got.String() != "200 OPTIONS" || handled != before {
		t.Fatalf("retransmission after the newer one ended: sent %s, handled %d more", got, handled-before)
	}
}

// TestServerBranchReuseBounded: transactions that share a branch are
// listed under it, and a lookup walks the list with the Layer's lock
// held; so a request that would make one more than maxSameBranch of them
// (an attacker varying the sent-by under one branch) gets 400 and no
// handler, while those listed still absorb their retransmissions and
// other branches go on.
func TestServerBranchReuseBounded(t *testing.T) {
	handled := 0
	a := newAnswering(t, Config{}, func(*sip.Request) int {
		handled++
		return 200
	})
	x := from("192.0.2.1")
	same := func(port int) msgSpec {
		return msgSpec{method: "OPTIONS", branch: "z9hG4bKreused", sentBy: fmt.Sprintf("192.0.2.9:%d", port), src: x}
	}
	for i := range maxSameBranch {
		if got := a.send(same(5060 + i)); got.String() != "200 OPTIONS" {
			t.Fatalf("request %d of the branch: sent %s", i, got)
		}
		a.settled()
	}
	for _, port := range []int{6000, 6001} {
		got := a.send(same(port))
		if res, ok := got.msg.(*sip.Response); !ok || res.StatusCode != 400 || res.Reason != "Branch In Use" {
			t.Fatalf("request %d of the branch: sent %s, want 400 Branch In Use", maxSameBranch+1, got)
		}
	}
	if handled != maxSameBranch {
		t.Fatalf("%d requests handled, want %d", handled, maxSameBranch)
	}
	if got := a.send(same(5060)); got.String() != "200 OPTIONS" || handled != maxSameBranch {
		t.Fatalf("retransmission of a listed one: sent %s, %d handled", got, handled)
	}
	if got := a.send(spec("OPTIONS", 1, x)); got.String() != "200 OPTIONS" {
		t.Fatalf("another branch: sent %s", got)
	}
}
