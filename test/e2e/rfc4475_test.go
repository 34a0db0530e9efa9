package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The semantic checks of RFC 4475 §3.3 (and a few of §3.1.2) against the
// running gateway over real sockets. The messages are the torture cases
// rewritten for loopback: every host they name is the gateway or the
// test's own socket, never the example hosts of the RFC's files.

// ioTimeout bounds every read and write of these checks.
const ioTimeout = 3 * time.Second

// response is a SIP response as these checks read it.
type response struct {
	raw    string
	status int
	reason string
	header map[string][]string // by lower-case long name
}

// compact maps the compact header names (RFC 3261 §7.3.3) to long ones.
var compact = map[string]string{
	"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
	"l": "content-length", "c": "content-type", "k": "supported", "e": "content-encoding",
	"s": "subject", "o": "event", "r": "refer-to", "u": "allow-events",
}

// get returns the values of a header joined by ", ".
func (r *response) get(name string) string {
	return strings.Join(r.header[strings.ToLower(name)], ", ")
}

// hasToken reports whether a comma-separated header holds token, in any
// case.
func (r *response) hasToken(name, token string) bool {
	for _, v := range r.header[strings.ToLower(name)] {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

// parseResponse reads the status line and headers of one response.
// Lines may end in CRLF or LF (as sipp's traces have them).
func parseResponse(b []byte) (*response, error) {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	head, _, _ := bytes.Cut(b, []byte("\n\n"))
	lines := strings.Split(string(head), "\n")
	status := strings.SplitN(lines[0], " ", 3)
	if len(status) < 2 || status[0] != "SIP/2.0" {
		return nil, fmt.Errorf("not a SIP response: %q", lines[0])
	}
	code, err := strconv.Atoi(status[1])
	if err != nil {
		return nil, fmt.Errorf("bad status line %q", lines[0])
	}
	r := &response{raw: string(b), status: code, header: make(map[string][]string)}
	if len(status) == 3 {
		r.reason = status[2]
	}
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if long, ok := compact[name]; ok {
			name = long
		}
		r.header[name] = append(r.header[name], strings.TrimSpace(value))
	}
	return r, nil
}

// cseqMethod is the method of the response's CSeq.
func (r *response) cseqMethod() string {
	f := strings.Fields(r.get("CSeq"))
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// toTag is the tag parameter of the response's To.
func (r *response) toTag() string {
	_, params, _ := strings.Cut(r.get("To"), ">")
	for _, p := range strings.Split(params, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "tag") {
			return v
		}
	}
	return ""
}

// udpPeer is a SIP peer on a UDP socket of its own on loopback.
type udpPeer struct {
	t    *testing.T
	conn *net.UDPConn
	gw   *net.UDPAddr
}

func newUDPPeer(t *testing.T, g *gateway) *udpPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	gw, err := net.ResolveUDPAddr("udp", g.sipAddr())
	if err != nil {
		t.Fatal(err)
	}
	return &udpPeer{t: t, conn: conn, gw: gw}
}

// port is the peer's local port, for its Via.
func (p *udpPeer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// send sends msg to the gateway.
func (p *udpPeer) send(msg string) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := p.conn.WriteToUDP([]byte(msg), p.gw); err != nil {
		p.t.Fatalf("send: %v", err)
	}
}

// final reads responses until a final one (provisional ones are skipped)
// or ioTimeout; it fails the test on a timeout.
func (p *udpPeer) final() *response {
	p.t.Helper()
	r, err := p.readFinal(ioTimeout)
	if err != nil {
		p.t.Fatalf("no final response: %v", err)
	}
	return r
}

func (p *udpPeer) readFinal(timeout time.Duration) (*response, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65535)
	for {
		p.conn.SetReadDeadline(deadline)
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return nil, err
		}
		r, err := parseResponse(buf[:n])
		if err != nil {
			return nil, err
		}
		if r.status >= 200 {
			return r, nil
		}
	}
}

// exchange sends msg and returns the final response.
func (p *udpPeer) exchange(msg string) *response {
	p.t.Helper()
	p.send(msg)
	return p.final()
}

// request builds a request from the peer: method and Request-URI, the
// Max-Forwards value, and more header lines (each ending in CRLF). The
// Via names the peer's socket with a new branch; To is bob@localhost
// unless extra has a To; From is an anonymous caller of another domain
// (.invalid: it names no host), which the gateway does not challenge.
func (p *udpPeer) request(method, ruri, maxForwards, extra string) string {
	id := token()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n", p.port(), id)
	if maxForwards != "" {
		fmt.Fprintf(&b, "Max-Forwards: %s\r\n", maxForwards)
	}
	if !strings.Contains(extra, "\r\nTo:") && !strings.HasPrefix(extra, "To:") {
		b.WriteString("To: <sip:bob@" + domain + ">\r\n")
	}
	fmt.Fprintf(&b, "From: <sip:caller@example.invalid>;tag=%s\r\n", id[:8])
	fmt.Fprintf(&b, "Call-ID: %s@127.0.0.1\r\n", id)
	fmt.Fprintf(&b, "CSeq: 8 %s\r\n", method)
	b.WriteString(extra)
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// ack acknowledges a non-2xx final response to an INVITE sent as invite,
// so that the gateway stops retransmitting it (RFC 3261 §17.1.1.3).
func (p *udpPeer) ack(invite string, res *response) {
	p.t.Helper()
	line := func(name string) string {
		for _, l := range strings.Split(invite, "\r\n") {
			if strings.HasPrefix(l, name+":") {
				return l
			}
		}
		return ""
	}
	ruri := strings.Fields(invite)[1]
	cseq := strings.Fields(line("CSeq"))[1]
	msg := "ACK " + ruri + " SIP/2.0\r\n" + line("Via") + "\r\nMax-Forwards: 70\r\n" +
		"To: " + res.get("To") + "\r\n" + line("From") + "\r\n" + line("Call-ID") + "\r\n" +
		"CSeq: " + cseq + " ACK\r\nContent-Length: 0\r\n\r\n"
	p.send(msg)
}

// token returns 16 random lower-case letters and digits.
func token() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// TestRFC4475 runs the checks on one gateway, one socket each.
func TestRFC4475(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	gwURI := "sip:" + g.sipAddr()

	// OPTIONS to the gateway itself is answered by it (RFC 3261 §11.2),
	// whether it is named by domain or by address.
	t.Run("options-to-gateway", func(t *testing.T) {
		for _, ruri := range []string{"sip:" + domain, gwURI} {
			p := newUDPPeer(t, g)
			res := p.exchange(p.request("OPTIONS", ruri, "70", "To: <"+ruri+">\r\n"))
			if res.status != 200 {
				t.Fatalf("OPTIONS %s: %d %s, want 200\n%s", ruri, res.status, res.reason, res.raw)
			}
			for _, m := range []string{"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"} {
				if !res.hasToken("Allow", m) {
					t.Errorf("OPTIONS %s: Allow %q lacks %s", ruri, res.get("Allow"), m)
				}
			}
			if _, ok := res.header["supported"]; !ok {
				t.Errorf("OPTIONS %s: no Supported header\n%s", ruri, res.raw)
			}
			if !res.hasToken("Accept", "application/sdp") {
				t.Errorf("OPTIONS %s: Accept %q lacks application/sdp", ruri, res.get("Accept"))
			}
			if !strings.Contains(res.get("To"), "tag=") {
				t.Errorf("OPTIONS %s: the 200 has no To tag", ruri)
			}
		}
	})

	// zeromf (§3.3.11): Max-Forwards 0 to a user is not forwarded: 483.
	t.Run("zeromf", func(t *testing.T) {
		for _, method := range []string{"OPTIONS", "INVITE"} {
			p := newUDPPeer(t, g)
			req := p.request(method, "sip:bob@"+domain, "0", "")
			res := p.exchange(req)
			if res.status != 483 {
				t.Errorf("%s with Max-Forwards 0 to bob: %d %s, want 483\n%s", method, res.status, res.reason, res.raw)
			}
			if method == "INVITE" {
				p.ack(req, res)
			}
		}
	})

	// bext01 (§3.3.5): unknown option tags in Require, as the UAS of an
	// OPTIONS to the gateway: 420 with every tag in Unsupported.
	t.Run("bext01-require", func(t *testing.T) {
		p := newUDPPeer(t, g)
		res := p.exchange(p.request("OPTIONS", "sip:"+domain, "6",
			"To: <sip:"+domain+">\r\nRequire: nothingSupportsThis, nothingSupportsThisEither\r\n"))
		if res.status != 420 {
			t.Fatalf("unknown Require: %d %s, want 420\n%s", res.status, res.reason, res.raw)
		}
		for _, tag := range []string{"nothingSupportsThis", "nothingSupportsThisEither"} {
			if !res.hasToken("Unsupported", tag) {
				t.Errorf("Unsupported %q lacks %s", res.get("Unsupported"), tag)
			}
		}
	})

	// bext01 as a proxy: the Proxy-Require tags of a request for a user.
	t.Run("bext01-proxy-require", func(t *testing.T) {
		p := newUDPPeer(t, g)
		res := p.exchange(p.request("OPTIONS", "sip:bob@"+domain, "6",
			"Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\r\n"))
		if res.status != 420 {
			t.Fatalf("unknown Proxy-Require: %d %s, want 420\n%s", res.status, res.reason, res.raw)
		}
		for _, tag := range []string{"noProxiesSupportThis", "norDoAnyProxiesSupportThis"} {
			if !res.hasToken("Unsupported", tag) {
				t.Errorf("Unsupported %q lacks %s", res.get("Unsupported"), tag)
			}
		}
	})

	// unkscm (§3.3.2): a Request-URI of an unknown scheme gets 416, and is
	// never routed by its To instead.
	t.Run("unkscm", func(t *testing.T) {
		p := newUDPPeer(t, g)
		res := p.exchange(p.request("OPTIONS", "nobodyKnowsThisScheme:totallyopaquecontent", "3", ""))
		if res.status != 416 {
			t.Errorf("unknown scheme: %d %s, want 416\n%s", res.status, res.reason, res.raw)
		}
	})

	// Stateless 400s that say what is wrong, for messages that do not
	// parse but carry a usable top Via.
	for _, tc := range []struct {
		name, req, reason string
		status            int
	}{
		{
			// A malformed Via below a good one (the separators of
			// badinv01): the answer goes back along the good one.
			name:   "malformed-second-via",
			req:    "OPTIONS sip:bob@" + domain + " SIP/2.0\r\n{via}\r\nVia: SIP/2.0/UDP 127.0.0.1;;,;,,\r\n{common}CSeq: 8 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			status: 400, reason: "Via",
		},
		{
			// mismatch01 (§3.1.2.17).
			name:   "mismatch01",
			req:    "OPTIONS sip:" + domain + " SIP/2.0\r\n{via}\r\n{common}CSeq: 8 INVITE\r\nContent-Length: 0\r\n\r\n",
			status: 400, reason: "CSeq",
		},
		{
			// insuf (§3.3.1): no From, To or Call-ID.
			name:   "insuf",
			req:    "OPTIONS sip:" + domain + " SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nCSeq: 8 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			status: 400, reason: "Missing",
		},
		{
			// clerr (§3.1.2.2) over UDP: a Content-Length beyond the
			// datagram.
			name:   "clerr",
			req:    "OPTIONS sip:" + domain + " SIP/2.0\r\n{via}\r\n{common}CSeq: 8 OPTIONS\r\nContent-Length: 9999\r\n\r\nshort",
			status: 400, reason: "Content-Length",
		},
		{
			// badvers (§3.1.2.16).
			name:   "badvers",
			req:    "OPTIONS sip:" + domain + " SIP/7.0\r\n{via}\r\n{common}CSeq: 8 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			status: 505,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newUDPPeer(t, g)
			id := token()
			req := strings.NewReplacer(
				"{via}", fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport", p.port(), id),
				"{common}", "Max-Forwards: 70\r\nTo: <sip:"+domain+">\r\nFrom: <sip:caller@127.0.0.1>;tag=1\r\nCall-ID: "+id+"\r\n",
			).Replace(tc.req)
			res := p.exchange(req)
			if res.status != tc.status || !strings.Contains(res.reason, tc.reason) {
				t.Errorf("%d %s, want %d with a reason naming %q\n%s", res.status, res.reason, tc.status, tc.reason, res.raw)
			}
			if !strings.Contains(res.get("Via"), "branch=z9hG4bK"+id) {
				t.Errorf("the answer does not carry the request's Via\n%s", res.raw)
			}
		})
	}

	// An unknown method to the gateway itself gets 501 (RFC 3261 §8.2.1;
	// mismatch02, esc02): never taken for a method it knows.
	t.Run("unknown-method", func(t *testing.T) {
		p := newUDPPeer(t, g)
		res := p.exchange(p.request("RE%47IST%45R", "sip:"+domain, "70", "To: <sip:"+domain+">\r\n"))
		if res.status != 501 {
			t.Errorf("unknown method: %d %s, want 501\n%s", res.status, res.reason, res.raw)
		}
	})

	// badinv01 (§3.1.2.1): the only Via is malformed ("SIP/2.0/UDP
	// 127.0.0.1;;,;,,"). RFC 4475 says respond 400: to the source address,
	// with the Via's sent-by and protocol kept.
	t.Run("badinv01", func(t *testing.T) {
		p := newUDPPeer(t, g)
		id := token()
		req := "INVITE sip:bob@" + domain + " SIP/2.0\r\n" +
			"To: <sip:bob@" + domain + ">\r\n" +
			"From: <sip:caller@127.0.0.1>;tag=134161461246\r\n" +
			"Max-Forwards: 7\r\n" +
			"Call-ID: badinv01." + id + "\r\n" +
			"CSeq: 8 INVITE\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(p.port()) + ";;,;,,\r\n" +
			"Contact: \"Joe\" <sip:joe@127.0.0.1>;;;;\r\n" +
			"Content-Length: 0\r\n\r\n"
		p.send(req)
		res, err := p.readFinal(ioTimeout)
		if err != nil {
			t.Fatalf("no answer to a request with a malformed Via (badinv01): %v", err)
		}
		if res.status != 400 {
			t.Errorf("badinv01: %d %s, want 400\n%s", res.status, res.reason, res.raw)
		}
	})

	// A message without Content-Length on a stream cannot be framed (RFC
	// 3261 §18.3): 400, then the connection is closed.
	t.Run("tcp-no-content-length", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", g.sipAddr(), ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(ioTimeout))
		port := conn.LocalAddr().(*net.TCPAddr).Port
		id := token()
		req := "OPTIONS sip:" + domain + " SIP/2.0\r\n" +
			fmt.Sprintf("Via: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK%s\r\n", port, id) +
			"Max-Forwards: 70\r\nTo: <sip:" + domain + ">\r\nFrom: <sip:caller@127.0.0.1>;tag=1\r\n" +
			"Call-ID: " + id + "\r\nCSeq: 8 OPTIONS\r\n\r\n"
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(bufio.NewReader(conn))
		if err != nil {
			// A deadline here means the gateway kept the connection open.
			t.Fatalf("reading until the gateway closes: %v (read %q)", err, all)
		}
		res, err := parseResponse(all)
		if err != nil {
			t.Fatalf("%v: %q", err, all)
		}
		if res.status != 400 || !strings.Contains(res.reason, "Content-Length") {
			t.Errorf("%d %s, want 400 naming Content-Length\n%s", res.status, res.reason, res.raw)
		}
		if n := strings.Count(string(all), "SIP/2.0 "); n != 1 {
			t.Errorf("%d responses before the close, want 1:\n%s", n, all)
		}
	})

	// None of the above may have hurt the gateway: it still answers.
	t.Run("still-alive", func(t *testing.T) {
		p := newUDPPeer(t, g)
		if res := p.exchange(p.request("OPTIONS", "sip:"+domain, "70", "To: <sip:"+domain+">\r\n")); res.status != 200 {
			t.Errorf("OPTIONS after the checks: %d %s", res.status, res.reason)
		}
	})
}
