package sipudp_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// icmpDeadline bounds the wait for an ICMP error on loopback: it comes
// back within microseconds; the kernel's global ICMP rate limit (shared
// with whatever else runs on the machine) may drop one, which is why the
// tests send again every resendEvery until then.
const (
	icmpDeadline = 2 * time.Second
	resendEvery  = 200 * time.Millisecond
)

// closedPort returns a loopback UDP address that nothing listens on: a
// port the system handed out and that was closed again.
func closedPort(t *testing.T, network, ip string) sip.Addr {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(net.JoinHostPort(ip, "0"))))
	if err != nil {
		t.Fatal(err)
	}
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return sip.Addr{Transport: sip.UDP, AddrPort: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
}

// report is one HandleUnreachable call.
type report struct {
	dst   sip.Addr
	quote string
	cause error
}

// unreachRecorder is a Handler that records unreachable reports.
type unreachRecorder struct {
	*transporttest.Recorder
	reports chan report
}

func newUnreachRecorder(t *testing.T) *unreachRecorder {
	return &unreachRecorder{Recorder: transporttest.NewRecorder(t), reports: make(chan report, 64)}
}

func (r *unreachRecorder) HandleUnreachable(dst sip.Addr, quote []byte, cause error) {
	select {
	case r.reports <- report{dst, string(quote), cause}:
	default:
	}
}

// awaitReport sends with send until a report comes, and returns it.
func (r *unreachRecorder) awaitReport(t *testing.T, send func()) report {
	t.Helper()
	deadline := time.After(icmpDeadline)
	tick := time.NewTicker(resendEvery)
	defer tick.Stop()
	send()
	for {
		select {
		case rep := <-r.reports:
			return rep
		case <-tick.C:
			send()
		case <-deadline:
			t.Fatalf("no unreachable report within %v", icmpDeadline)
			return report{}
		}
	}
}

func TestUnreachableReported(t *testing.T) {
	for _, tc := range []struct{ name, listen, network, ip string }{
		{"ipv4", "127.0.0.1:0", "udp4", "127.0.0.1"},
		{"ipv6", "[::1]:0", "udp6", "::1"},
		{"dual stack to ipv4", "[::]:0", "udp4", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
			if tc.ip == "::1" {
				if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
					t.Fatalf("this test needs the IPv6 loopback ::1 (enable IPv6 on lo): %v", err)
				} else {
					c.Close()
				}
			}
			tr := listen(t, tc.listen, sipudp.Options{})
			rec := newUnreachRecorder(t)
			transporttest.Serve(t, tr, rec)
			dst := closedPort(t, tc.network, tc.ip)
			req := options("icmp1")
			rep := rec.awaitReport(t, func() {
				if err := tr.Send(context.Background(), transporttest.ParseRequest(t, req), dst); err != nil {
					t.Errorf("send: %v", err)
				}
			})
			if rep.dst != dst {
				t.Errorf("reported %v, want %v", rep.dst, dst)
			}
			if !strings.HasPrefix(req, rep.quote) || !strings.HasPrefix(rep.quote, "OPTIONS sip:") {
				t.Errorf("quote %q is not the start of the request", rep.quote)
			}
			if !errors.Is(rep.cause, transport.ErrUnreachable) || !errors.Is(rep.cause, syscall.ECONNREFUSED) {
				t.Errorf("cause %v, want ErrUnreachable and ECONNREFUSED", rep.cause)
			}
		})
	}
}

// TestUnreachableSendsOn: the socket's pending ICMP error, set by a
// datagram to a closed port, must not fail the next send, to someone
// else: Send reads the error queue and sends again.
func TestUnreachableSendsOn(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	conn, tr := listenConn(t)
	// Not served: no read loop takes the pending error first.
	peer := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	dst := closedPort(t, "udp4", "127.0.0.1")
	deadline := time.Now().Add(icmpDeadline)
	for {
		if err := tr.Send(context.Background(), transporttest.ParseRequest(t, options("lost")), dst); err != nil {
			t.Fatalf("send to the closed port: %v", err)
		}
		if pendingError(t, conn, resendEvery) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ICMP error within %v", icmpDeadline)
		}
	}
	to := sip.Addr{Transport: sip.UDP, AddrPort: peer.Addr()}
	if err := tr.Send(context.Background(), transporttest.ParseRequest(t, options("next")), to); err != nil {
		t.Fatalf("send after an ICMP error: %v", err)
	}
	b, _ := peer.Read()
	if !strings.Contains(string(b), "Call-ID: next") {
		t.Fatalf("peer got %q", b)
	}
}

// listenConn returns a transport on 127.0.0.1, closed when the test ends,
// and its socket, for a test to use past the transport.
func listenConn(t *testing.T) (*net.UDPConn, *sipudp.Transport) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := sipudp.New(conn, sipudp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return conn, tr
}

// pendingError polls conn for up to d and reports whether an ICMP error
// is pending on it (POLLERR: the error queue is not empty).
func pendingError(t *testing.T, conn *net.UDPConn, d time.Duration) bool {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var perr error
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		for {
			n, perr = unix.Poll(fds, int(d.Milliseconds()))
			if !errors.Is(perr, unix.EINTR) {
				break
			}
		}
		if n > 0 && fds[0].Revents&unix.POLLERR == 0 {
			n = 0
		}
	}); err != nil {
		t.Fatal(err)
	}
	if perr != nil {
		t.Fatal(perr)
	}
	return n > 0
}

// TestUnreachableKeepsReading: the read loop reads the ICMP errors (the
// datagrams go out past Send here, which would read them too), and a
// burst of them is no read failure: the transport keeps serving.
func TestUnreachableKeepsReading(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	conn, tr := listenConn(t)
	rec := newUnreachRecorder(t)
	transporttest.Serve(t, tr, rec)
	// More than the 16 failed reads in a row after which a read loop
	// gives up, and fewer than the kernel's ICMP burst of 50. A write may
	// fail with the error of an earlier one: that is Send's to handle.
	const burst = 40
	for range burst {
		_, _ = conn.WriteToUDPAddrPort([]byte(options("burst")), closedPort(t, "udp4", "127.0.0.1").AddrPort)
	}
	dst := closedPort(t, "udp4", "127.0.0.1")
	rec.awaitReport(t, func() { _, _ = conn.WriteToUDPAddrPort([]byte(options("last")), dst.AddrPort) })
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	c.Send(tr.LocalAddr(), options("still"))
	if m := rec.Message(t); m.Header().CallID() != "still" {
		t.Fatalf("got %s, want the request sent after the burst", m.Header().CallID())
	}
}

// TestUnreachableEndsTransaction runs the transaction layer over the
// transport Layer: a request to a closed loopback port ends at once with
// 503 and a transport error, and a request to a port that is open but
// silent goes on.
func TestUnreachableEndsTransaction(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	l := transporttest.NewLayer(transport.Config{}, tr)
	txl := transaction.New(context.Background(), l, nil, transaction.Config{})
	t.Cleanup(func() { txl.Close() })
	transporttest.Serve(t, l, transport.HandlerFuncs{Message: txl.HandleMessage, Unreachable: txl.HandleUnreachable})

	silent := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	quiet := start(t, l, txl, "BYE", sip.Addr{Transport: sip.UDP, AddrPort: silent.Addr()})
	dead := start(t, l, txl, "BYE", closedPort(t, "udp4", "127.0.0.1"))
	began := time.Now()

	select {
	case res := <-dead.Responses():
		if res == nil || res.StatusCode != 503 {
			t.Fatalf("got %v, want a synthesized 503", res)
		}
	case <-time.After(icmpDeadline):
		t.Fatalf("the transaction to a closed port did not end within %v", icmpDeadline)
	}
	t.Logf("503 after %v", time.Since(began))
	if err := dead.Err(); !errors.Is(err, transaction.ErrTransport) || !errors.Is(err, transport.ErrUnreachable) ||
		!errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Err() = %v, want a transport error: unreachable, connection refused", err)
	}
	if got := quiet.State(); got != transaction.StateTrying {
		t.Errorf("the transaction to the silent peer: %v, want Trying", got)
	}
}

// start sends a request of method to dst in a client transaction.
func start(t *testing.T, l *transport.Layer, txl *transaction.Layer, method string, dst sip.Addr) *transaction.ClientTx {
	t.Helper()
	req := sip.NewRequest(method, sip.URI{Scheme: "sip", User: "bob", Host: dst.AddrPort.Addr().String(), Port: int(dst.AddrPort.Port())})
	if _, err := l.StampVia(req, dst); err != nil {
		t.Fatal(err)
	}
	req.Add("Max-Forwards", "70")
	req.Add("From", "<sip:alice@example.com>;tag=a1")
	req.Add("To", "<sip:bob@example.com>;tag=b1")
	req.Add("Call-ID", sip.NewCallID())
	req.Add("CSeq", "2 "+method)
	req.Add("Content-Length", "0")
	tx, err := txl.Request(context.Background(), req, dst)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}
