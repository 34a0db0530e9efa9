package transaction

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func TestQuotedRequest(t *testing.T) {
	const br = "z9hG4bK74bf9"
	tests := []struct {
		name   string
		quote  string
		method string
	}{
		{"request", "BYE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=" + br + ";rport\r\nMax-Forwards: 70\r\n", "BYE"},
		{"cut after the via", "INVITE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=" + br + "\r\nTo: <sip:b", "INVITE"},
		{"compact form, LF only", "MESSAGE sip:bob@x SIP/2.0\nv : SIP/2.0/UDP 192.0.2.1;branch=" + br + "\n", "MESSAGE"},
		{"via after other headers", "OPTIONS sip:x SIP/2.0\r\nRoute: <sip:p;lr>\r\nVIA: SIP/2.0/UDP h;branch=" + br + "\r\n", "OPTIONS"},
		{"two vias on a line", "ACK sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=" + br + ", SIP/2.0/UDP i;branch=z9hG4bKother\r\n", "ACK"},
	}
	for _, tt := range tests {
		method, branch, ok := quotedRequest([]byte(tt.quote))
		if !ok || method != tt.method || branch != br {
			t.Errorf("%s: got %q %q %v, want %q %q", tt.name, method, branch, ok, tt.method, br)
		}
	}
	for name, quote := range map[string]string{
		"empty":             "",
		"request line cut":  "BYE sip:bob@192.0.2.4 SI",
		"via cut":           "BYE sip:bob@x SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK74b",
		"no via":            "BYE sip:bob@x SIP/2.0\r\nTo: <sip:bob@x>\r\n\r\n",
		"response":          "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=" + br + "\r\n",
		"rfc 2543 branch":   "BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1234\r\n",
		"no branch":         "BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n",
		"bad via":           "BYE sip:x SIP/2.0\r\nVia: nonsense\r\n",
		"bad method":        "B@E sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=" + br + "\r\n",
		"not sip":           "GET / HTTP/1.1\r\nVia: SIP/2.0/UDP h;branch=" + br + "\r\n",
		"binary":            "\x00\x01\x02\n\xff\xfe\n",
		"via after the end": "BYE sip:x SIP/2.0\r\n\r\nVia: SIP/2.0/UDP h;branch=" + br + "\r\n",
	} {
		if m, b, ok := quotedRequest([]byte(quote)); ok {
			t.Errorf("%s: got %q %q, want nothing", name, m, b)
		}
	}
}

func FuzzQuotedRequest(f *testing.F) {
	f.Add([]byte("BYE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\n"))
	f.Add([]byte("INVITE sip:x SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bKa, SIP/2.0/UDP i\n"))
	f.Fuzz(func(t *testing.T, quote []byte) {
		method, branch, ok := quotedRequest(quote)
		if ok && (!sip.IsToken(method) || !strings.HasPrefix(branch, sip.BranchCookie)) {
			t.Fatalf("got %q %q from %q", method, branch, quote)
		}
	})
}

var errICMP = errors.New("icmp port unreachable")

// TestHandleUnreachable: a report ends the client transaction whose
// request it quotes, sent to that address, with 503 at once; any other
// report ends nothing.
func TestHandleUnreachable(t *testing.T) {
	bytesOf := func(m sip.Message) []byte { return []byte(m.String()) }

	t.Run("non-invite", func(t *testing.T) {
		h := newHarness(t, Config{})
		tx := mustRequest(t, h, "BYE", peerUDP)
		h.l.HandleUnreachable(peerUDP, bytesOf(tx.Request()), errICMP)
		expectTransportFailure(t, h, tx, []string{"503"})
	})
	t.Run("quote cut after the via", func(t *testing.T) {
		h := newHarness(t, Config{})
		tx := mustRequest(t, h, "MESSAGE", peerUDP)
		q := bytesOf(tx.Request())
		end := strings.Index(string(q), "\r\nMax-Forwards")
		h.l.HandleUnreachable(peerUDP, q[:end+2], errICMP)
		expectTransportFailure(t, h, tx, []string{"503"})
	})
	t.Run("ipv4-mapped destination", func(t *testing.T) {
		h := newHarness(t, Config{})
		tx := mustRequest(t, h, "BYE", peerUDP)
		mapped := sip.Addr{Transport: "udp", AddrPort: netip.AddrPortFrom(
			netip.AddrFrom16(peerUDP.AddrPort.Addr().As16()), peerUDP.AddrPort.Port())}
		h.l.HandleUnreachable(mapped, bytesOf(tx.Request()), errICMP)
		expectTransportFailure(t, h, tx, []string{"503"})
	})
	t.Run("invite calling", func(t *testing.T) {
		h := newHarness(t, Config{})
		tx := mustRequest(t, h, "INVITE", peerUDP)
		h.l.HandleUnreachable(peerUDP, bytesOf(tx.Request()), errICMP)
		expectTransportFailure(t, h, tx, []string{"503"})
	})
	t.Run("cancel ends the invite too", func(t *testing.T) {
		h := newHarness(t, Config{})
		inv := mustRequest(t, h, "INVITE", peerUDP)
		h.l.HandleMessage(wire(t, response(inv.Request(), 180, "b"), peerUDP))
		if err := inv.Cancel(); err != nil {
			t.Fatal(err)
		}
		sent := h.net.wait(t, 2) // INVITE, CANCEL
		cancel := sent[len(sent)-1].msg
		if label(cancel) != "CANCEL" {
			t.Fatalf("sent %s, want the CANCEL last", labels(sent))
		}
		h.l.HandleUnreachable(peerUDP, bytesOf(cancel), errICMP)
		expectTransportFailure(t, h, inv, []string{"180", "503"})
	})
	t.Run("ack of a non-2xx ends the invite", func(t *testing.T) {
		h := newHarness(t, Config{})
		inv := mustRequest(t, h, "INVITE", peerUDP)
		h.l.HandleMessage(wire(t, response(inv.Request(), 486, "b"), peerUDP))
		sent := h.net.wait(t, 2) // INVITE, ACK
		h.l.HandleUnreachable(peerUDP, bytesOf(sent[len(sent)-1].msg), errICMP)
		if inv.State() != StateTerminated || !errors.Is(inv.Err(), ErrTransport) {
			t.Fatalf("after the ACK's report: %v, %v; want Terminated with a transport error", inv.State(), inv.Err())
		}
	})

	// Reports that must end nothing.
	other := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("198.51.100.2:5070")}
	for name, report := range map[string]func(req *sip.Request) (sip.Addr, []byte){
		"another port": func(req *sip.Request) (sip.Addr, []byte) { return other, bytesOf(req) },
		"another transport": func(req *sip.Request) (sip.Addr, []byte) {
			return sip.Addr{Transport: sip.TCP, AddrPort: peerUDP.AddrPort}, bytesOf(req)
		},
		"another branch": func(req *sip.Request) (sip.Addr, []byte) {
			c := req.Clone()
			c.PopVia()
			c.PrependVia(sip.Via{Transport: sip.UDP, Host: "203.0.113.5", Port: 5060, Params: sip.Params(";branch=" + sip.NewBranch())})
			return peerUDP, bytesOf(c)
		},
		"another method": func(req *sip.Request) (sip.Addr, []byte) {
			return peerUDP, []byte(strings.Replace(req.String(), "BYE ", "INFO ", 1))
		},
		"branch cut short": func(req *sip.Request) (sip.Addr, []byte) {
			s := req.String()
			return peerUDP, []byte(s[:strings.Index(s, "z9hG4bK")+9])
		},
		"forged, without the request": func(*sip.Request) (sip.Addr, []byte) {
			return peerUDP, []byte("BYE sip:bob@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKguess\r\n")
		},
		"garbage": func(*sip.Request) (sip.Addr, []byte) { return peerUDP, []byte("\x00\xff garbage") },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, Config{})
			tx := mustRequest(t, h, "BYE", peerUDP)
			dst, quote := report(tx.Request())
			h.l.HandleUnreachable(dst, quote, errICMP)
			if got := tx.State(); got != StateTrying {
				t.Fatalf("after the report: %v, want Trying", got)
			}
			if got, _ := drain(tx); len(got) != 0 {
				t.Fatalf("delivered %v", got)
			}
		})
	}

	t.Run("after the end", func(t *testing.T) {
		h := newHarness(t, Config{})
		tx := mustRequest(t, h, "BYE", peerUDP)
		bye := tx.Request() // nil once the final response is in
		h.l.HandleMessage(wire(t, response(bye, 200, "b"), peerUDP))
		h.l.HandleUnreachable(peerUDP, bytesOf(bye), errICMP)
		if got, _ := drain(tx); len(got) != 1 || got[0] != "200" || tx.Err() != nil {
			t.Fatalf("delivered %v, Err %v; want the 200 alone", got, tx.Err())
		}
	})
}

// expectTransportFailure checks that tx ended at once with the responses
// want (the last a synthesized 503) and a transport error wrapping the
// report's cause, and left the layer.
func expectTransportFailure(t *testing.T, h *harness, tx *ClientTx, want []string) {
	t.Helper()
	if got := tx.State(); got != StateTerminated {
		t.Fatalf("after the report: %v, want Terminated", got)
	}
	got, closed := drain(tx)
	if strings.Join(got, ",") != strings.Join(want, ",") || !closed {
		t.Fatalf("delivered %v (closed %v), want %v", got, closed, want)
	}
	if err := tx.Err(); !errors.Is(err, ErrTransport) || !errors.Is(err, errICMP) {
		t.Fatalf("Err() = %v, want ErrTransport wrapping the cause", err)
	}
	if n := h.l.Stats().ClientTransactions; n != 0 {
		t.Fatalf("%d client transactions left", n)
	}
}
