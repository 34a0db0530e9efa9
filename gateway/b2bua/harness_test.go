package b2bua

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/internal/inorder"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/mediapeer"
	"github.com/switchboard/switchboard/internal/sipnet"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// checkGoroutines fails the test if goroutines started during it are still
// running when it ends (after its other cleanups, which run first).
func checkGoroutines(t testing.TB) { leakcheck.Count(t, waitLimit) }

// logSink is the B2BUA's log in a test: it reports the end of every call
// on a channel, and prints everything with B2BUA_TEST_LOG=debug.
type logSink struct {
	ended chan slog.Record
	echo  bool
	attrs []slog.Attr
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	if s.echo {
		var b strings.Builder
		b.WriteString(r.Level.String() + " " + r.Message)
		for _, a := range s.attrs {
			b.WriteString(" " + a.String())
		}
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		os.Stderr.WriteString(b.String() + "\n")
	}
	if r.Message == "call ended" {
		r2 := r.Clone()
		r2.AddAttrs(s.attrs...)
		select {
		case s.ended <- r2:
		default:
		}
	}
	return nil
}

func (s *logSink) WithAttrs(as []slog.Attr) slog.Handler {
	c := *s
	c.attrs = append(append([]slog.Attr(nil), s.attrs...), as...)
	return &c
}

func (s *logSink) WithGroup(string) slog.Handler { return s }

var debugLog = os.Getenv("B2BUA_TEST_LOG") == "debug"

func discardLogger() *slog.Logger {
	if debugLog {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// harness is a gateway (a transaction layer whose handler is a tiny
// router in front of the B2BUA), a browser's SIP UA reaching it over
// WebSocket and a phone's over UDP, on an in-memory network.
type harness struct {
	t       testing.TB
	net     *sipnet.Network
	engine  *media.Engine
	b2b     *B2BUA
	gw      *sipnet.Node
	layer   *transaction.Layer
	phone   *testUA
	browser *testUA
	// browserDst is where the gateway reaches the browser: over the
	// flow of its WebSocket connection.
	browserDst sip.Addr
	logs       *logSink
	clock      clock.Clock
	order      *inorder.Order
}

type harnessOptions struct {
	media media.Options
	b2bua Options
	// requester, if set, wraps the transaction layer as the B2BUA's
	// Transactions.
	requester func(transaction.Requester) transaction.Requester
	// maxClientTx is the gateway's transaction.Config.MaxClientTransactions.
	maxClientTx int
}

func newHarness(t testing.TB, ho harnessOptions) *harness {
	t.Helper()
	checkGoroutines(t)
	h := &harness{t: t, net: sipnet.New(), logs: &logSink{ended: make(chan slog.Record, 16), echo: debugLog}}
	t.Cleanup(func() {
		h.net.Close()
		if debugLog || t.Failed() {
			for _, d := range h.net.Log.All() {
				t.Logf("net: %s", d)
			}
		}
	})

	mo := ho.media
	mo.LoopbackOnly = true
	mo.BindIP = netip.MustParseAddr("127.0.0.1")
	mo.DrainTime = -1
	if mo.Logger == nil {
		mo.Logger = discardLogger()
	}
	e, err := media.NewEngine(context.Background(), mo)
	if err != nil {
		t.Fatal(err)
	}
	h.engine = e
	t.Cleanup(func() { _ = e.Close() })

	h.gw = h.net.AddNode("gateway", gwUDP, gwWS)
	// As the gateway's: the in-dialog requests take their places in
	// order as they arrive, and the B2BUA relays them in that order.
	h.order = ho.b2bua.Order
	if h.order == nil {
		h.order = inorder.New(inorder.Options{Clock: ho.b2bua.Clock})
	}
	h.layer = transaction.New(context.Background(), h.gw, transaction.HandlerFunc(h.serve), transaction.Config{
		Logger: discardLogger(),
		Admit: func(req *sip.Request, _ time.Duration) (*sip.Response, bool) {
			if !h.order.Arrive(req) {
				return inorder.Refusal(req), false
			}
			return nil, false
		},
		MaxClientTransactions: ho.maxClientTx,
		// As the gateway's (forwardStray), but with no proxy behind.
		OnStrayResponse: func(_ context.Context, res *sip.Response) { h.b2b.HandleStray(res) },
	})
	h.gw.Recv = h.layer.HandleMessage
	t.Cleanup(func() { _ = h.layer.Close() })

	o := ho.b2bua
	o.Order = h.order
	o.Engine = e
	o.Transactions = h.layer
	if ho.requester != nil {
		o.Transactions = ho.requester(h.layer)
	}
	o.Sender = h.gw
	id, err := identity.New(identity.Config{Domains: []string{"localhost"}, Endpoints: []identity.Endpoint{
		{Transport: sip.UDP, Host: "127.0.0.1", Port: 5060},
		{Transport: sip.WS, Host: "127.0.0.1", Port: 8080},
	}})
	if err != nil {
		t.Fatal(err)
	}
	o.Identity = id
	o.Logger = slog.New(h.logs)
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.b2b = b
	h.clock = b.clock

	h.phone = newTestUA(t, h.net, "phone", phoneAddr, gwUDP, "<sip:phone@127.0.0.1:5070>")
	h.browser = newTestUA(t, h.net, "browser", browserWS, gwWS, "<sip:browser@df7jal23ls0d.invalid;transport=ws>")
	flow := h.net.Connect(h.browser.node, sip.WS, gwWS)
	h.browser.gw.Flow = flow
	h.browserDst = sip.Addr{Transport: sip.WS, AddrPort: browserWS.AddrPort, Flow: flow}
	// First of the cleanups: the calls a test leaves up end with BYEs,
	// which the UAs, still running, answer by themselves.
	t.Cleanup(func() {
		h.autoAnswer()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Errorf("Close: %v; calls %+v\n%s", err, b.Calls(), buf[:n])
		}
	})
	return h
}

// autoAnswer makes the UAs answer every request by themselves, the
// queued ones too: the test is over, and the calls it left up end.
func (h *harness) autoAnswer() {
	h.phone.autoAnswer()
	h.browser.autoAnswer()
}

// newBrowser returns the browser's media; once the test is over, the
// UAs answer the BYEs that closing it causes.
func (h *harness) newBrowser() *testBrowser {
	h.t.Helper()
	br := newTestBrowser(h.t)
	h.t.Cleanup(h.autoAnswer)
	return br
}

// serve is the gateway's handler: in-dialog requests to the B2BUA, new
// INVITEs routed by user to the phone or the browser.
func (h *harness) serve(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) {
	defer h.order.Forget(req) // a request the B2BUA did not take
	if h.b2b.HandleInDialog(ctx, tx, req) || tx == nil {
		return
	}
	if req.Method != sip.MethodInvite || req.To().Tag() != "" {
		_ = tx.Respond(sip.NewResponse(req, 481, ""))
		return
	}
	var target Target
	switch req.URI.User {
	case "phone":
		target = Target{URI: sip.URI{Scheme: "sip", User: "phone", Host: "127.0.0.1", Port: 5070}, Dst: phoneAddr}
	case "phone-failover", "nowhere":
		// The phone's next hop resolved to dead addresses first (RFC
		// 3263 failover): nothing listens at deadAddrs.
		target = Target{URI: sip.URI{Scheme: "sip", User: "phone", Host: "phone.example"}, Dst: deadAddrs[0], Failover: deadAddrs[1:]}
		if req.URI.User == "phone-failover" {
			target.Failover = append(target.Failover, phoneAddr)
		}
	case "browser":
		target = Target{
			URI:    sip.URI{Scheme: "sip", User: "browser", Host: "df7jal23ls0d.invalid", Params: ";transport=ws"},
			Dst:    h.browserDst,
			WebRTC: true,
		}
	case "fork", "fork-elsewhere":
		// A proxy forking to a browser among other contacts: the B2BUA
		// runs the browser's branch, the proxy relays what it yields;
		// fork-elsewhere cancels as when another branch answered.
		reason := ""
		if req.URI.User == "fork-elsewhere" {
			reason = completedElsewhere
		}
		h.relayBranch(ctx, tx, req, Target{
			URI:    sip.URI{Scheme: "sip", User: "browser", Host: "df7jal23ls0d.invalid", Params: ";transport=ws"},
			Dst:    h.browserDst,
			WebRTC: true,
		}, reason)
		return
	default:
		_ = tx.Respond(sip.NewResponse(req, 404, ""))
		return
	}
	// As the proxy would have it: the caller authenticated as the user
	// of its From, and the callee is the registration of its user.
	target.CallerUser, target.User = req.From().URI.User, target.URI.User
	h.b2b.Call(ctx, tx, req, target)
}

// relayBranch is the part of a proxy that the tests need: one branch,
// its responses forwarded upstream, the caller's CANCEL passed on.
func (h *harness) relayBranch(ctx context.Context, tx *transaction.ServerTx, req *sip.Request, target Target, reason string) {
	// The request's context ends on the caller's CANCEL, which would
	// cancel the branch without the reason this relay gives it.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	leg := h.b2b.Branch(ctx, req, target)
	canceled := tx.Canceled()
	for {
		select {
		case res, ok := <-leg.Responses():
			if !ok {
				return
			}
			_ = tx.Respond(res)
		case <-canceled:
			canceled = nil
			if reason != "" {
				leg.CancelWithReason(reason)
			} else {
				leg.Cancel()
			}
		case <-tx.Done():
			return
		}
	}
}

// ended waits for the end of a call and returns its cause.
func (h *harness) ended() string {
	h.t.Helper()
	select {
	case r := <-h.logs.ended:
		var cause string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "cause" {
				cause = a.Value.String()
			}
			return true
		})
		return cause
	case <-time.After(waitLimit):
		h.t.Fatal("no call ended")
		return ""
	}
}

// testBrowser is the browser's media: mediapeer's, offering Opus, PCMU
// and telephone-event as browsers do.
type testBrowser = mediapeer.Browser

func newTestBrowser(t testing.TB) *testBrowser {
	t.Helper()
	return mediapeer.NewBrowser(t, mediapeer.BrowserOptions{Codecs: newTestBrowserCodecs()})
}

// newTestBrowserCodecs are the audio codecs of the test browser.
func newTestBrowserCodecs() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: 126},
	}
}

// testPhone is the phone's media: mediapeer's plain RTP endpoint.
type testPhone struct {
	*mediapeer.Phone
	t testing.TB
}

func newTestPhone(t testing.TB) *testPhone {
	t.Helper()
	return &testPhone{Phone: mediapeer.NewPhone(t), t: t}
}

// sdp is an SDP of the phone: m=audio with payload types pts (0 PCMU, 8
// PCMA, 18 G729, 101 telephone-event/8000), a=ptime:20 and extra
// attribute lines.
func (p *testPhone) sdp(version int, pts string, extra ...string) []byte {
	return p.SDP(version, pts, append([]string{"a=ptime:20"}, extra...)...)
}

// learn takes the gateway's RTP address from its SDP.
func (p *testPhone) learn(sdp []byte) {
	p.t.Helper()
	if err := p.Learn(sdp); err != nil {
		p.t.Fatalf("phone: %v:\n%s", err, sdp)
	}
}

// audioToPhone sends packets from the browser until the phone gets one
// carrying a marker payload, and returns it.
func audioToPhone(t testing.TB, br *testBrowser, ph *testPhone) *rtp.Packet {
	t.Helper()
	return mediapeer.AudioToPhone(t, br, ph.Phone)
}

// audioToBrowser sends packets from the phone until the browser gets one
// carrying a marker payload, and returns it.
func audioToBrowser(t testing.TB, ph *testPhone, br *testBrowser) *rtp.Packet {
	t.Helper()
	return mediapeer.AudioToBrowser(t, ph.Phone, br)
}

func mustContain(t testing.TB, body []byte, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !bytes.Contains(body, []byte(p)) {
			t.Errorf("body lacks %q:\n%s", p, body)
		}
	}
}
