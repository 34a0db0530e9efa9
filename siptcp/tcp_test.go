package siptcp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/siptcp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// options returns an OPTIONS request sent over the transport named.
var options = transporttest.OptionsRequest

func withBody(callID, body string) string {
	return strings.Replace(options(callID, "TCP"), "Content-Length: 0\r\n\r\n",
		fmt.Sprintf("Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body), 1)
}

func listen(t *testing.T, addr string, opts siptcp.Options) *siptcp.Transport {
	t.Helper()
	tr, err := siptcp.Listen(context.Background(), addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestRoundTripThroughLayer(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{})
	l := transporttest.NewLayer(transport.Config{}, tr)
	rec := transporttest.Answer(t, l)
	p := transporttest.DialTCP(t, tr.LocalAddr())
	p.Write(options("rt1", "TCP"))
	res := p.Response()
	if res.StatusCode != 200 || res.CallID() != "rt1" {
		t.Fatalf("got %d %s", res.StatusCode, res.CallID())
	}
	req := rec.Message(t).(*sip.Request)
	local := p.Addr()
	if req.Source.Transport != sip.TCP || req.Source.AddrPort != local || req.Source.Flow == 0 {
		t.Errorf("source %v, peer %v", req.Source, local)
	}
	v, _ := res.TopVia()
	if v.Received() != "127.0.0.1" {
		t.Errorf("via %s", v.String())
	}
	if port, _ := v.RPort(); port != int(local.Port()) {
		t.Errorf("rport %d", port)
	}
	// The same connection carries the next exchange.
	p.Write(options("rt2", "TCP"))
	if res := p.Response(); res.CallID() != "rt2" {
		t.Errorf("second answer %s", res.CallID())
	}
	if req2 := rec.Message(t); req2.Src() != req.Source {
		t.Errorf("second request came from %v, first from %v", req2.Src(), req.Source)
	}
}

func TestIPv6RoundTrip(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no ::1: %v", err)
	} else {
		ln.Close()
	}
	tr := listen(t, "[::1]:0", siptcp.Options{})
	l := transporttest.NewLayer(transport.Config{}, tr)
	rec := transporttest.Answer(t, l)
	p := transporttest.DialTCP(t, tr.LocalAddr())
	p.Write(options("v6", "TCP"))
	if res := p.Response(); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	req := rec.Message(t).(*sip.Request)
	if v, _ := req.TopVia(); v.Received() != "::1" || !req.Source.AddrPort.Addr().Is6() {
		t.Errorf("via %s from %v", v.String(), req.Source)
	}
}

func TestManyMessagesInOneWrite(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{})
	rec := transporttest.Record(t, tr)
	var b strings.Builder
	for i := range 50 {
		b.WriteString(withBody(fmt.Sprintf("one%d", i), strings.Repeat("x", i)))
	}
	transporttest.DialTCP(t, tr.LocalAddr()).Write(b.String())
	for i := range 50 {
		m := rec.Message(t)
		if m.Header().CallID() != fmt.Sprintf("one%d", i) || len(m.Payload()) != i {
			t.Fatalf("message %d: %s with %d bytes", i, m.Header().CallID(), len(m.Payload()))
		}
	}
}

func TestSplitWrites(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{})
	rec := transporttest.Record(t, tr)
	stream := withBody("split0", "hello, world") + "\r\n\r\n" + withBody("split1", strings.Repeat("z", 3000)) + withBody("split2", "")
	for _, sizes := range [][]int{{1}, {7, 13, 1, 250}, {4095, 2, 4097}} {
		p := transporttest.DialTCP(t, tr.LocalAddr())
		rest := stream
		for i := 0; rest != ""; i++ {
			n := min(sizes[i%len(sizes)], len(rest))
			p.Write(rest[:n])
			rest = rest[n:]
		}
		for i := range 3 {
			m := rec.Message(t)
			if m.Header().CallID() != fmt.Sprintf("split%d", i) {
				t.Fatalf("chunks %v: message %d is %s", sizes, i, m.Header().CallID())
			}
		}
		// The ping inside the stream was answered.
		if pong, err := p.Read(2); err != nil || pong != "\r\n" {
			t.Errorf("pong %q, %v", pong, err)
		}
	}
}

func TestKeepAlive(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{})
	transporttest.Record(t, tr)
	p := transporttest.DialTCP(t, tr.LocalAddr())
	p.Write("\r\n") // a pong: no answer
	p.Write(strings.Replace(options("ka1", "TCP"), "CSeq: 1 OPTIONS", "CSeq: 1 BYE", 1))
	// The first bytes back are the 400, not a CRLF.
	if res := p.Response(); res.StatusCode != 400 {
		t.Fatalf("status %d", res.StatusCode)
	}
	p.Write("\r\n\r\n")
	if pong, err := p.Read(2); err != nil || pong != "\r\n" {
		t.Fatalf("pong %q, %v", pong, err)
	}
}

func TestMalformedMessageKeepsConnection(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{})
	rec := transporttest.Record(t, tr)
	p := transporttest.DialTCP(t, tr.LocalAddr())
	p.Write(strings.Replace(options("bad1", "TCP"), "Max-Forwards: 70", "Max-Forwards: lots", 1))
	if res := p.Response(); res.StatusCode != 400 || res.Reason != "Malformed Max-Forwards" || res.CallID() != "bad1" {
		t.Errorf("got %d %q", res.StatusCode, res.Reason)
	}
	p.Write(options("good1", "TCP"))
	if m := rec.Message(t); m.Header().CallID() != "good1" {
		t.Errorf("delivered %s", m.Header().CallID())
	}
}

func TestBrokenFramingClosesConnection(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		status     int
	}{
		{"missing content-length", strings.Replace(options("nocl", "TCP"), "Content-Length: 0\r\n", "", 1), 400},
		{"oversized", withBody("big", strings.Repeat("b", 2000)), 513},
		{"endless header", strings.Replace(options("endless", "TCP"), "Content-Length: 0\r\n\r\n", "X: "+strings.Repeat("y", 3000), 1), 513},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
			tr := listen(t, "127.0.0.1:0", siptcp.Options{Limits: sip.Limits{MaxMessageSize: 1024}})
			rec := transporttest.Record(t, tr)
			p := transporttest.DialTCP(t, tr.LocalAddr())
			p.Write(tc.data)
			if res := p.Response(); res.StatusCode != tc.status {
				t.Errorf("status %d %s", res.StatusCode, res.Reason)
			}
			p.EOF()
			closed := rec.FlowClosed(t)
			if closed.Transport != sip.TCP || closed.Flow == 0 {
				t.Errorf("closed %v", closed)
			}
			if n, c := rec.Counts(); n != 0 || c != 0 {
				t.Errorf("%d messages, %d more closings", n, c)
			}
		})
	}
}

func TestClosedMidMessage(t *testing.T) {
	for _, abrupt := range []bool{false, true} {
		t.Run(fmt.Sprintf("abrupt=%v", abrupt), func(t *testing.T) {
			leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
			tr := listen(t, "127.0.0.1:0", siptcp.Options{})
			rec := transporttest.Record(t, tr)
			p := transporttest.DialTCP(t, tr.LocalAddr())
			p.Write(options("whole", "TCP"))
			first := rec.Message(t)
			msg := withBody("half", strings.Repeat("h", 100))
			p.Write(msg[:len(msg)/2])
			if abrupt {
				// SO_LINGER 0 makes Close send a RST.
				p.Conn.(*net.TCPConn).SetLinger(0)
			}
			p.Conn.Close()
			if got := rec.FlowClosed(t); got != first.Src() {
				t.Errorf("closed %v, flow was %v", got, first.Src())
			}
			if n, c := rec.Counts(); n != 0 || c != 0 {
				t.Errorf("%d messages, %d more closings", n, c)
			}
			if n := tr.NumConns(); n != 0 {
				t.Errorf("%d connections left", n)
			}
		})
	}
}

func TestTenThousandMessages(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{})
	rec := transporttest.Record(t, tr)
	p := transporttest.DialTCP(t, tr.LocalAddr())
	const n = 10000
	go func() {
		w := bufio.NewWriterSize(p.Conn, 8192)
		for i := range n {
			io.WriteString(w, withBody(fmt.Sprintf("m%d", i), "x"))
		}
		w.Flush()
	}()
	if !rec.WaitMessages(n) {
		got, _ := rec.Counts()
		t.Fatalf("%d of %d messages", got, n)
	}
	for i := range n {
		if got := rec.Message(t).Header().CallID(); got != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %s", i, got)
		}
	}
}

func TestTLSRoundTripAndReuse(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	serverTLS, clientTLS := transporttest.TLSConfigs(t)
	srv := listen(t, "127.0.0.1:0", siptcp.Options{TLS: serverTLS})
	if srv.Network() != sip.TLS {
		t.Fatalf("network %s", srv.Network())
	}
	sl := transporttest.NewLayer(transport.Config{}, srv)
	srvRec := transporttest.Answer(t, sl)

	cli := listen(t, "127.0.0.1:0", siptcp.Options{TLS: serverTLS, ClientTLS: clientTLS})
	cl := transporttest.NewLayer(transport.Config{}, cli)
	cliRec := transporttest.Record(t, cl)

	dst := sip.Addr{Transport: sip.TLS, AddrPort: srv.LocalAddr().AddrPort}
	var flows []uint64
	for i := range 2 {
		m, _ := sip.ParseMessage([]byte(options(fmt.Sprintf("tls%d", i), "TLS")))
		req := m.(*sip.Request)
		req.Del("Via")
		via, err := cl.StampVia(req, dst)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Send(context.Background(), req, dst); err != nil {
			t.Fatal(err)
		}
		res := cliRec.Message(t).(*sip.Response)
		if res.StatusCode != 200 || res.Source.Transport != sip.TLS {
			t.Fatalf("got %d over %s", res.StatusCode, res.Source.Transport)
		}
		if v, _ := res.TopVia(); v.Branch() != via.Branch() || v.Transport != sip.TLS {
			t.Errorf("via %s", v.String())
		}
		flows = append(flows, srvRec.Message(t).Src().Flow)
	}
	if flows[0] != flows[1] || srv.NumConns() != 1 {
		t.Errorf("connection not reused: flows %v, %d connections", flows, srv.NumConns())
	}

	// A client that does not trust the certificate cannot connect.
	untrusting := listen(t, "127.0.0.1:0", siptcp.Options{TLS: serverTLS, ClientTLS: &tls.Config{}})
	transporttest.Record(t, untrusting)
	m, _ := sip.ParseMessage([]byte(options("tlsbad", "TLS")))
	if err := untrusting.Send(context.Background(), m, dst); err == nil {
		t.Error("handshake with an untrusted certificate succeeded")
	}
}

func TestConcurrentSendsShareOneDial(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	srv := listen(t, "127.0.0.1:0", siptcp.Options{})
	rec := transporttest.Record(t, srv)
	cli := listen(t, "127.0.0.1:0", siptcp.Options{})
	transporttest.Record(t, cli)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			m, _ := sip.ParseMessage([]byte(options(fmt.Sprintf("c%d", i), "TCP")))
			if err := cli.Send(context.Background(), m, srv.LocalAddr()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if !rec.WaitMessages(20) {
		t.Fatal("messages missing")
	}
	if n := srv.NumConns(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestResponseAfterFlowClosed(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	// The phone listens on its own port (its Via sent-by) and sends its
	// request from another connection, which it closes before the answer.
	phone := listen(t, "127.0.0.1:0", siptcp.Options{})
	phoneRec := transporttest.Record(t, phone)

	srv := listen(t, "127.0.0.1:0", siptcp.Options{})
	sl := transporttest.NewLayer(transport.Config{}, srv)
	srvRec := transporttest.Record(t, sl)

	p := transporttest.DialTCP(t, srv.LocalAddr())
	p.Write(strings.Replace(options("late", "TCP"), "10.0.0.1:5062", phone.LocalAddr().AddrPort.String(), 1))
	req := srvRec.Message(t).(*sip.Request)
	p.Conn.Close()
	if got := srvRec.FlowClosed(t); got != req.Source {
		t.Fatalf("closed %v", got)
	}
	if sl.FlowOpen(req.Source) {
		t.Error("flow still open")
	}
	// RFC 3261 §18.2.2: a new connection to received and the sent-by port.
	if err := sl.Send(context.Background(), sip.NewResponse(req, 200, ""), req.Source); err != nil {
		t.Fatal(err)
	}
	res := phoneRec.Message(t).(*sip.Response)
	if res.CallID() != "late" || res.StatusCode != 200 {
		t.Errorf("got %d %s", res.StatusCode, res.CallID())
	}
	// A request over the dead flow fails as RFC 5626 needs.
	m, _ := sip.ParseMessage([]byte(options("dead", "TCP")))
	if err := sl.Send(context.Background(), m, req.Source); !isFlowClosed(err) {
		t.Errorf("request over closed flow: %v", err)
	}
}

func isFlowClosed(err error) bool {
	return err != nil && strings.Contains(err.Error(), transport.ErrFlowClosed.Error())
}

func TestSendErrors(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{DialTimeout: 2 * time.Second})
	transporttest.Record(t, tr)
	m, _ := sip.ParseMessage([]byte(options("e", "TCP")))
	ctx := context.Background()
	// A port nobody listens on: take one and free it.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	free := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	if err := tr.Send(ctx, m, sip.Addr{Transport: sip.TCP, AddrPort: free}); err == nil {
		t.Error("send to a closed port succeeded")
	}
	if err := tr.Send(ctx, m, sip.Addr{Transport: sip.TCP, AddrPort: free, Flow: 1 << 62}); !isFlowClosed(err) {
		t.Errorf("unknown flow: %v", err)
	}
	tr.Close()
	if err := tr.Send(ctx, m, sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("127.0.0.1:9")}); err == nil ||
		!strings.Contains(err.Error(), transport.ErrClosed.Error()) {
		t.Errorf("send after close: %v", err)
	}
}
