package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/sip/digest"
)

// The attacks of the security review, against the real binary over real
// sockets: user enumeration by a stranger, password guessing spread over
// the registrar, the proxy and the admin API, and guessing at one user
// from many addresses. Each attacker has a loopback address of its own
// (127.0.0.x), so that the gateway's throttle tells them apart, and every
// message names only loopback addresses and the gateway's domain.

// e2eMaxFailures is the gateway's default number of failures within a
// minute that gets a source blocked (accounts.DefaultMaxFailures), and
// e2eUserMaxFailures the same for one user name from many sources.
const (
	e2eMaxFailures     = 10
	e2eUserMaxFailures = 20
)

// attackPeer is a SIP client on a socket of its own, UDP or TCP, bound to a
// loopback address of the test's choice.
type attackPeer struct {
	t    *testing.T
	tcp  bool
	ip   string
	conn net.Conn
	rd   *bufio.Reader // TCP: the stream the responses are framed in
	seq  int
	// ws is set for a peer over WebSocket, which reads and writes like
	// one over TCP; sentBy is then its .invalid host.
	ws     bool
	sentBy string
}

func newAttackPeer(t *testing.T, g *gateway, ip string, tcp bool) *attackPeer {
	t.Helper()
	p := &attackPeer{t: t, tcp: tcp, ip: ip}
	var err error
	if tcp {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: ioTimeout}
		p.conn, err = d.Dial("tcp", g.sipAddr())
		p.rd = bufio.NewReader(p.conn)
	} else {
		var gw *net.UDPAddr
		if gw, err = net.ResolveUDPAddr("udp", g.sipAddr()); err == nil {
			p.conn, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)}, gw)
		}
	}
	if err != nil {
		t.Fatalf("peer at %s: %v", ip, err)
	}
	t.Cleanup(func() { p.conn.Close() })
	return p
}

// newWSAttackPeer is an attackPeer over a SIP WebSocket from ip, whose
// handshake carries header.
func newWSAttackPeer(t *testing.T, g *gateway, ip string, header http.Header) *attackPeer {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: ioTimeout}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))+"/ws",
		&websocket.DialOptions{HTTPClient: client, HTTPHeader: header, Subprotocols: []string{"sip"}})
	if err != nil {
		t.Fatalf("websocket from %s: %v", ip, err)
	}
	// The connection's context is the test's: NetConn closes the
	// connection when it ends.
	conn := websocket.NetConn(context.Background(), c, websocket.MessageText)
	t.Cleanup(func() { conn.Close() })
	return &attackPeer{t: t, tcp: true, ws: true, ip: ip, conn: conn, rd: bufio.NewReader(conn), sentBy: token()[:12] + ".invalid"}
}

func (p *attackPeer) transport() string {
	switch {
	case p.ws:
		return "WS"
	case p.tcp:
		return "TCP"
	}
	return "UDP"
}

func (p *attackPeer) local() string {
	if p.sentBy != "" {
		return p.sentBy
	}
	return p.conn.LocalAddr().String()
}

// request builds a request from the peer: From is a user at the peer's
// own address (a stranger) unless from names another; extra are more
// header lines, each ending in CRLF.
func (p *attackPeer) request(method, ruri, from, extra string) string {
	p.seq++
	id := token()
	if from == "" {
		from = "sip:stranger@" + p.ip
	}
	to := ruri
	if method == "REGISTER" {
		to = from
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK%s;rport\r\n", p.transport(), p.local(), id)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <%s>;tag=%s\r\nTo: <%s>\r\n", from, id[:8], to)
	fmt.Fprintf(&b, "Call-ID: %s@%s\r\nCSeq: %d %s\r\n", id, p.ip, p.seq, method)
	fmt.Fprintf(&b, "Contact: <sip:peer@%s;transport=%s>\r\n", p.local(), strings.ToLower(p.transport()))
	if method == "SUBSCRIBE" {
		b.WriteString("Event: presence\r\nExpires: 60\r\n")
	}
	b.WriteString(extra)
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// exchange sends msg and returns the final response, acknowledging it
// when msg is an INVITE (the ACK of a non-2xx is hop by hop).
func (p *attackPeer) exchange(msg string) *response {
	p.t.Helper()
	p.send(msg)
	for {
		r, err := p.read()
		if err != nil {
			p.t.Fatalf("%s from %s: no final response: %v", strings.Fields(msg)[0], p.local(), err)
		}
		if r.status < 200 {
			continue
		}
		if strings.HasPrefix(msg, "INVITE ") {
			p.ack(msg, r)
		}
		return r
	}
}

func (p *attackPeer) send(msg string) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(p.conn, msg); err != nil {
		p.t.Fatalf("send from %s: %v", p.local(), err)
	}
}

// read reads one response: a datagram, or a message framed by its
// Content-Length on TCP.
func (p *attackPeer) read() (*response, error) {
	p.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	if !p.tcp {
		buf := make([]byte, 65535)
		n, err := p.conn.Read(buf)
		if err != nil {
			return nil, err
		}
		return parseResponse(buf[:n])
	}
	var head strings.Builder
	length := 0
	for {
		line, err := p.rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if line == "\r\n" || line == "\n" {
			if head.Len() == 0 {
				continue // a keepalive
			}
			break
		}
		head.WriteString(line)
		if name, v, ok := strings.Cut(line, ":"); ok {
			if n := strings.ToLower(strings.TrimSpace(name)); n == "content-length" || n == "l" {
				if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || length < 0 || length > 1<<16 {
					return nil, fmt.Errorf("bad Content-Length %q", v)
				}
			}
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(p.rd, body); err != nil {
		return nil, err
	}
	return parseResponse([]byte(head.String() + "\r\n" + string(body)))
}

// ack acknowledges the non-2xx final response res to invite.
func (p *attackPeer) ack(invite string, res *response) {
	p.t.Helper()
	var via, from, callID, cseq string
	for _, l := range strings.Split(invite, "\r\n") {
		switch {
		case strings.HasPrefix(l, "Via:"):
			via = l
		case strings.HasPrefix(l, "From:"):
			from = l
		case strings.HasPrefix(l, "Call-ID:"):
			callID = l
		case strings.HasPrefix(l, "CSeq:"):
			cseq = strings.Fields(l)[1]
		}
	}
	ruri := strings.Fields(invite)[1]
	p.send("ACK " + ruri + " SIP/2.0\r\n" + via + "\r\nMax-Forwards: 70\r\n" + from + "\r\nTo: " + res.get("To") +
		"\r\n" + callID + "\r\nCSeq: " + cseq + " ACK\r\nContent-Length: 0\r\n\r\n")
}

// authorized returns msg with credentials of user answering the
// challenge in res (401 or 407) and a new branch and CSeq.
func (p *attackPeer) authorized(msg string, res *response, user, password string) string {
	p.t.Helper()
	header, answer := "WWW-Authenticate", "Authorization"
	if res.status == 407 {
		header, answer = "Proxy-Authenticate", "Proxy-Authorization"
	}
	ch, err := digest.ParseChallenge(res.get(header))
	if err != nil {
		p.t.Fatalf("challenge %q: %v", res.get(header), err)
	}
	lines := strings.Split(msg, "\r\n")
	method, ruri := strings.Fields(lines[0])[0], strings.Fields(lines[0])[1]
	cred, err := digest.Answer(ch, method, ruri, user, password)
	if err != nil {
		p.t.Fatal(err)
	}
	p.seq++
	var b strings.Builder
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "Via:"):
			l = fmt.Sprintf("Via: SIP/2.0/%s %s;branch=z9hG4bK%s;rport", p.transport(), p.local(), token())
		case strings.HasPrefix(l, "CSeq:"):
			l = fmt.Sprintf("CSeq: %d %s", p.seq, method)
		case l == "" && b.Len() > 0 && !strings.Contains(b.String(), answer+":"):
			b.WriteString(answer + ": " + cred.String() + "\r\n")
		}
		b.WriteString(l + "\r\n")
	}
	return strings.TrimSuffix(b.String(), "\r\n")
}

// attempt sends msg, answers its challenge as user with password and
// returns the final response to the request with credentials.
func (p *attackPeer) attempt(msg, user, password string) *response {
	p.t.Helper()
	res := p.exchange(msg)
	if res.status != 401 && res.status != 407 {
		return res
	}
	return p.exchange(p.authorized(msg, res, user, password))
}

// register tries to register user with password from the peer.
func (p *attackPeer) register(user, password string) *response {
	p.t.Helper()
	return p.attempt(p.request("REGISTER", "sip:"+domain, "sip:"+user+"@"+domain, ""), user, password)
}

// message sends a MESSAGE from user, answering the proxy's challenge
// with password.
func (p *attackPeer) message(user, password, to string) *response {
	p.t.Helper()
	return p.attempt(p.request("MESSAGE", "sip:"+to+"@"+domain, "sip:"+user+"@"+domain, ""), user, password)
}

// responseHeaderNames lists the header names of a response in order, in long
// form and lower case.
func responseHeaderNames(r *response) []string {
	var names []string
	head, _, _ := strings.Cut(r.raw, "\n\n")
	for _, l := range strings.Split(head, "\n")[1:] {
		name, _, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if long, ok := compact[name]; ok {
			name = long
		}
		names = append(names, name)
	}
	return names
}

// throttleRefusal reports whether r is the throttle's refusal: 403 Too Many
// Failed Attempts with Retry-After, or, from a stateless admission check,
// a 403, 429 or 503 with Retry-After.
func throttleRefusal(r *response) bool {
	return (r.status == 403 || r.status == 429 || r.status == 503) && r.get("Retry-After") != ""
}

// TestNoUserEnumeration: a stranger asking for a real account that is
// not registered and for made-up names, with INVITE, MESSAGE and OPTIONS
// over UDP and TCP, gets the same status, reason and header names; and a
// source asking for many names is blocked, after which the answers are
// still the same for real and made-up names, while other sources go on.
func TestNoUserEnumeration(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	for _, tc := range []struct {
		name          string
		tcp           bool
		asker, prober string
	}{
		{"udp", false, "127.0.0.21", "127.0.0.23"},
		{"tcp", true, "127.0.0.22", "127.0.0.24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newAttackPeer(t, g, tc.asker, tc.tcp)
			for _, method := range []string{"INVITE", "MESSAGE", "OPTIONS"} {
				real := p.exchange(p.request(method, "sip:1001@"+domain, "", ""))
				madeUp := p.exchange(p.request(method, "sip:no-"+token()+"@"+domain, "", ""))
				if real.status != madeUp.status || real.reason != madeUp.reason {
					t.Errorf("%s: real unregistered account %d %s, made-up name %d %s: a stranger tells them apart",
						method, real.status, real.reason, madeUp.status, madeUp.reason)
				}
				if real.status != 480 {
					t.Errorf("%s to an unregistered account: %d %s, want 480", method, real.status, real.reason)
				}
				if a, b := responseHeaderNames(real), responseHeaderNames(madeUp); !slices.Equal(a, b) {
					t.Errorf("%s: header names differ:\nreal    %v\nmade-up %v", method, a, b)
				}
			}

			// A scan: the source is blocked after e2eMaxFailures answers
			// that said "no target".
			scan := newAttackPeer(t, g, tc.prober, tc.tcp)
			for i := range e2eMaxFailures {
				if r := scan.exchange(scan.request("OPTIONS", fmt.Sprintf("sip:scan%d@%s", i, domain), "", "")); r.status != 480 {
					t.Fatalf("probe %d: %d %s, want 480", i+1, r.status, r.reason)
				}
			}
			// Refused: over UDP the gateway drops a blocked source's
			// requests (it answers nothing that could be reflected), so
			// the refusal is read over TCP from the same address.
			refused := scan
			if !tc.tcp {
				refused = newAttackPeer(t, g, tc.prober, true)
			}
			var first *response
			for _, user := range []string{"1001", "alice", "no-" + token()} {
				r := refused.exchange(refused.request("INVITE", "sip:"+user+"@"+domain, "", ""))
				if !throttleRefusal(r) {
					t.Fatalf("after %d probes, INVITE to %s: %d %s, want refused with Retry-After\n%s", e2eMaxFailures, user, r.status, r.reason, r.raw)
				}
				if ra, err := strconv.Atoi(r.get("Retry-After")); err != nil || ra < 1 || ra > 300 {
					t.Errorf("Retry-After %q, want 1 to 300 seconds", r.get("Retry-After"))
				}
				if first == nil {
					first = r
				} else if r.status != first.status || !slices.Equal(responseHeaderNames(r), responseHeaderNames(first)) {
					t.Errorf("refusals differ between names:\n%s\n%s", first.raw, r.raw)
				}
			}
			// The asker, which probed fewer names, is not blocked.
			if r := p.exchange(p.request("MESSAGE", "sip:bob@"+domain, "", "")); r.status != 480 {
				t.Errorf("another source after the scan: %d %s, want 480", r.status, r.reason)
			}
		})
	}
	if v := g.metricValue(t, `switchboard_auth_failures_total{origin="probe"}`); v < 2*e2eMaxFailures {
		t.Errorf("probes counted %v, want at least %d", v, 2*e2eMaxFailures)
	}
	if v := g.metricValue(t, "switchboard_auth_blocked_sources"); v != 2 {
		t.Errorf("blocked sources %v, want 2 (the scanners)", v)
	}
}

// TestOneThrottle: a source blocked by wrong REGISTER passwords is
// refused by proxy authentication, and a source blocked by wrong proxy
// credentials is refused by the registrar; a third source registers.
func TestOneThrottle(t *testing.T) {
	g := startGateway(t, gatewayOptions{})

	t.Run("register-then-proxy", func(t *testing.T) {
		p := newAttackPeer(t, g, "127.0.0.31", false)
		for i := range e2eMaxFailures {
			if r := p.register("alice", "guess-"+strconv.Itoa(i)); r.status != 401 {
				t.Fatalf("wrong password %d: %d %s, want 401", i+1, r.status, r.reason)
			}
		}
		// Over TCP from the same address: over UDP a blocked source's
		// requests are dropped unanswered.
		r := newAttackPeer(t, g, "127.0.0.31", true).message("alice", users["alice"], "bob")
		if r.status != 403 || r.reason != "Too Many Failed Attempts" || r.get("Retry-After") == "" {
			t.Errorf("MESSAGE with alice's right password from the blocked source: %d %s, want 403 Too Many Failed Attempts with Retry-After\n%s", r.status, r.reason, r.raw)
		}
	})
	t.Run("proxy-then-register", func(t *testing.T) {
		p := newAttackPeer(t, g, "127.0.0.32", false)
		for i := range e2eMaxFailures {
			if r := p.message("bob", "guess-"+strconv.Itoa(i), "alice"); r.status != 407 {
				t.Fatalf("wrong proxy credentials %d: %d %s, want 407", i+1, r.status, r.reason)
			}
		}
		r := newAttackPeer(t, g, "127.0.0.32", true).register("bob", users["bob"])
		if r.status != 403 || r.reason != "Too Many Failed Attempts" || r.get("Retry-After") == "" {
			t.Errorf("REGISTER with bob's right password from the blocked source: %d %s, want 403 Too Many Failed Attempts with Retry-After\n%s", r.status, r.reason, r.raw)
		}
	})
	if r := newAttackPeer(t, g, "127.0.0.33", false).register("bob", users["bob"]); r.status != 200 {
		t.Errorf("bob from another source: %d %s, want 200", r.status, r.reason)
	}
	for series, want := range map[string]float64{
		`switchboard_auth_failures_total{origin="register"}`: e2eMaxFailures,
		`switchboard_auth_failures_total{origin="proxy"}`:    e2eMaxFailures,
		"switchboard_auth_blocked_sources":                   2,
	} {
		if got := g.metricValue(t, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestUserGuessedFromManySources: guesses at one account from many
// sources, each below the per-source limit, block the account's name for
// new addresses, but not at the address its phone registered from.
func TestUserGuessedFromManySources(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	phone := newAttackPeer(t, g, "127.0.0.41", false)
	if r := phone.register("1001", users["1001"]); r.status != 200 {
		t.Fatalf("1001's phone: %d %s", r.status, r.reason)
	}
	for i := range e2eUserMaxFailures {
		p := newAttackPeer(t, g, fmt.Sprintf("127.0.1.%d", i+1), false)
		if r := p.register("1001", "guess"); r.status != 401 {
			t.Fatalf("guess from source %d: %d %s, want 401", i+1, r.status, r.reason)
		}
	}
	if r := newAttackPeer(t, g, "127.0.0.42", false).register("1001", users["1001"]); r.status != 403 || r.reason != "Too Many Failed Attempts" {
		t.Errorf("1001 with the right password from a new address: %d %s, want 403 Too Many Failed Attempts", r.status, r.reason)
	}
	if r := phone.register("1001", users["1001"]); r.status != 200 {
		t.Errorf("1001's phone at its usual address: %d %s, want 200", r.status, r.reason)
	}
	if r := newAttackPeer(t, g, "127.0.0.42", false).register("1000", users["1000"]); r.status != 200 {
		t.Errorf("another user from the new address: %d %s, want 200", r.status, r.reason)
	}
	if v := g.metricValue(t, "switchboard_auth_blocked_users"); v != 1 {
		t.Errorf("blocked users %v, want 1", v)
	}
}

// TestAdminAPIThrottled: wrong bearer tokens get 401 until the source is
// blocked, then 429 with Retry-After, even with the right token, and the
// same source is refused at the registrar; another source is served.
func TestAdminAPIThrottled(t *testing.T) {
	const token = "e2e-admin-token-0123456789"
	g := startGateway(t, gatewayOptions{env: map[string]string{"SWITCHBOARD_ADMIN_TOKEN": token}})
	attacker := httpFrom(t, "127.0.0.51")
	for i := range e2eMaxFailures {
		if code, _ := g.adminGet(t, attacker, "Bearer guess-"+strconv.Itoa(i)); code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i+1, code)
		}
	}
	code, hdr := g.adminGet(t, attacker, "Bearer "+token)
	if code != http.StatusTooManyRequests {
		t.Fatalf("right token from the blocked source: %d, want 429", code)
	}
	if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 || ra > 300 {
		t.Errorf("Retry-After %q, want 1 to 300 seconds", hdr.Get("Retry-After"))
	}
	if r := newAttackPeer(t, g, "127.0.0.51", true).register("alice", users["alice"]); r.status != 403 {
		t.Errorf("REGISTER from the source the admin API blocked: %d %s, want 403", r.status, r.reason)
	}
	if code, _ := g.adminGet(t, httpFrom(t, "127.0.0.52"), "Bearer "+token); code != http.StatusOK {
		t.Errorf("right token from another source: %d, want 200", code)
	}
	if v := g.metricValue(t, `switchboard_auth_failures_total{origin="admin"}`); v != e2eMaxFailures {
		t.Errorf("admin failures %v, want %d", v, e2eMaxFailures)
	}
}

// httpFrom is an HTTP client whose connections come from ip.
func httpFrom(t *testing.T, ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: ioTimeout}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// adminGet asks the admin API for the calls with the Authorization auth.
func (g *gateway) adminGet(t *testing.T, c *http.Client, auth string) (int, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/admin/calls", net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode, res.Header
}

// metricValue returns the value of the /metrics sample that starts with
// series (name and labels as exposed), or -1 when there is none.
func (g *gateway) metricValue(t *testing.T, series string) float64 {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(fmt.Sprintf("http://%s/metrics", net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
				return v
			}
		}
	}
	return -1
}

// TestForwardedForFromStrangers: X-Forwarded-For is believed only from a
// trusted proxy. A WebSocket client that is none, naming a new address in
// each handshake, is still throttled under its own; through the proxy,
// the client the proxy names is the one throttled, and registered.
func TestForwardedForFromStrangers(t *testing.T) {
	const proxy = "127.0.0.69"
	g := startGateway(t, gatewayOptions{env: map[string]string{
		"SWITCHBOARD_TRUSTED_PROXIES": proxy,
		"SWITCHBOARD_ADMIN_TOKEN":     "e2e-admin-token-0123456789",
	}})
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	for i := range e2eMaxFailures {
		p := newWSAttackPeer(t, g, "127.0.0.61", xff("1.2.3."+strconv.Itoa(i)))
		if r := p.register("alice", "guess-"+strconv.Itoa(i)); r.status != 401 {
			t.Fatalf("wrong password %d: %d %s, want 401", i+1, r.status, r.reason)
		}
	}
	if r := newWSAttackPeer(t, g, "127.0.0.61", xff("1.2.3.99")).register("alice", users["alice"]); !throttleRefusal(r) {
		t.Errorf("the guesser, naming yet another address: %d %s, want 403 Too Many Failed Attempts", r.status, r.reason)
	}
	// Through the trusted proxy: the guesser, named, is refused; another
	// client is not, and is registered under its own address.
	if r := newWSAttackPeer(t, g, proxy, xff("127.0.0.61")).register("alice", users["alice"]); !throttleRefusal(r) {
		t.Errorf("the guesser named by the proxy: %d %s, want 403 Too Many Failed Attempts", r.status, r.reason)
	}
	if r := newWSAttackPeer(t, g, proxy, xff("198.51.100.7")).register("bob", users["bob"]); r.status != 200 {
		t.Fatalf("bob through the proxy: %d %s, want 200", r.status, r.reason)
	}
	if regs := g.adminRegistrations(t, "e2e-admin-token-0123456789"); !strings.Contains(regs, `"source": "198.51.100.7:0"`) {
		t.Errorf("bob's binding does not name the client the proxy named:\n%s", regs)
	}
}

// adminRegistrations returns the admin API's registrations, as JSON.
func (g *gateway) adminRegistrations(t *testing.T, token string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))+"/admin/registrations", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET /admin/registrations: %d %s", res.StatusCode, b)
	}
	return string(b)
}
