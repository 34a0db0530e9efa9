package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/internal/netns"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// capWait bounds every wait of the connection cap tests.
const capWait = 10 * time.Second

// metric returns the value of the /metrics sample that starts with series
// (name and labels as exposed), or -1 when there is none.
func (g *gateway) metric(t *testing.T, series string) float64 {
	t.Helper()
	client := &http.Client{Timeout: capWait}
	res, err := client.Get(fmt.Sprintf("http://%s/metrics", net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

func (g *gateway) expectMetric(t *testing.T, series string, want float64) {
	t.Helper()
	if got := g.metric(t, series); got != want {
		t.Errorf("%s = %v, want %v", series, got, want)
	}
}

// wsURL is the gateway's SIP WebSocket.
func (g *gateway) wsURL() string {
	return "ws://" + net.JoinHostPort(g.host, strconv.Itoa(g.httpPort)) + "/ws"
}

// dialWS opens a SIP WebSocket to g from the source address src. It
// returns the HTTP status of a refused handshake, or 101 and the
// connection.
func dialWS(t *testing.T, g *gateway, src netip.Addr) (*wsClient, int) {
	t.Helper()
	c, status := transporttest.DialWS(t, g.wsURL(), src)
	if c == nil {
		return nil, status
	}
	return &wsClient{t: t, c: c}, status
}

// sipConn is one SIP client connection, over TCP or a WebSocket.
type sipConn interface {
	send(msg string)
	// next returns the next message, failing the test after capWait.
	next() sip.Message
	// closed checks that the gateway ends the connection.
	closed()
	// via is the client's Via transport and host.
	via() string
}

type wsClient struct {
	t *testing.T
	c *websocket.Conn
}

func (w *wsClient) send(msg string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), capWait)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		w.t.Fatalf("websocket write: %v", err)
	}
}

func (w *wsClient) next() sip.Message {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), capWait)
	defer cancel()
	_, b, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatalf("websocket read: %v", err)
	}
	m, err := sip.ParseMessage(b)
	if err != nil {
		w.t.Fatalf("unparseable message: %v\n%s", err, b)
	}
	return m
}

func (w *wsClient) closed() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), capWait)
	defer cancel()
	for {
		if _, _, err := w.c.Read(ctx); err != nil {
			if ctx.Err() != nil {
				w.t.Fatal("websocket still open")
			}
			return
		}
	}
}

func (w *wsClient) via() string { return "WS " + token() + ".invalid" }

type tcpClient struct{ *transporttest.TCPPeer }

// dialTCP connects to the gateway's SIP TCP listener at to from src.
func dialTCP(t *testing.T, src netip.Addr, to string) *tcpClient {
	t.Helper()
	return &tcpClient{transporttest.DialTCPFrom(t, src, sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort(to)})}
}

func (p *tcpClient) send(msg string)   { p.Write(msg) }
func (p *tcpClient) next() sip.Message { return p.Message() }
func (p *tcpClient) closed()           { p.Closed() }
func (p *tcpClient) via() string       { return "TCP " + p.Addr().String() }

// ping sends an OPTIONS to the gateway itself over c and checks the 200.
func ping(t *testing.T, c sipConn) {
	t.Helper()
	id := token()
	c.send("OPTIONS sip:" + domain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + c.via() + ";branch=z9hG4bK" + id + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:stranger@example.invalid>;tag=" + id[:8] + "\r\n" +
		"To: <sip:" + domain + ">\r\n" +
		"Call-ID: " + id + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n")
	res, ok := c.next().(*sip.Response)
	if !ok || res.StatusCode != 200 || res.CallID() != id {
		t.Fatalf("OPTIONS to the gateway: got %v", res)
	}
}

// registerOver registers user over c with a Contact that can only be
// reached over c (an .invalid host), answering the digest challenge.
func registerOver(t *testing.T, c sipConn, user, transport string) {
	t.Helper()
	callID, tag := token(), token()[:8]
	contact := "<sip:" + user + "@" + token() + ".invalid;transport=" + transport + ">;expires=600"
	auth := ""
	client := digest.Client{Username: user, Password: users[user]}
	for cseq := 1; cseq <= 2; cseq++ {
		c.send("REGISTER sip:" + domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/" + c.via() + ";branch=z9hG4bK" + token() + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:" + user + "@" + domain + ">;tag=" + tag + "\r\n" +
			"To: <sip:" + user + "@" + domain + ">\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Contact: " + contact + "\r\n" + auth +
			"Content-Length: 0\r\n\r\n")
		res, ok := c.next().(*sip.Response)
		switch {
		case !ok:
			t.Fatal("REGISTER: got a request, want the answer")
		case res.StatusCode == 200:
			return
		case res.StatusCode != 401 || auth != "":
			t.Fatalf("REGISTER: %d %s", res.StatusCode, res.Reason)
		}
		ch, err := digest.ParseChallenge(res.Get("WWW-Authenticate"))
		if err != nil {
			t.Fatalf("challenge: %v", err)
		}
		cr, err := client.Authorize(ch, sip.MethodRegister, "sip:"+domain)
		if err != nil {
			t.Fatal(err)
		}
		auth = "Authorization: " + cr.String() + "\r\n"
	}
}

// reachable checks that a request for user, sent by a UDP peer, arrives
// over c and that its answer goes back: the binding's connection works.
func reachable(t *testing.T, g *gateway, c sipConn, user string) {
	t.Helper()
	p := newUDPPeer(t, g)
	p.send(p.request("OPTIONS", "sip:"+user+"@"+domain, "70", "To: <sip:"+user+"@"+domain+">\r\n"))
	req, ok := c.next().(*sip.Request)
	if !ok || req.Method != sip.MethodOptions {
		t.Fatalf("%s's connection got %v, want the OPTIONS", user, req)
	}
	res := sip.NewResponse(req, 200, "")
	res.SetToTag(token()[:8])
	c.send(string(res.AppendTo(nil)))
	if r := p.final(); r.status != 200 {
		t.Errorf("OPTIONS to %s over her connection: %d %s", user, r.status, r.reason)
	}
}

// loopback returns 127.0.0.i, a source address of its own on loopback.
func loopback(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)}) }

// TestWebSocketCapPerAddress: one address cannot hold more WebSockets
// than SWITCHBOARD_WS_MAX_CONNS_PER_IP; the next handshakes get 503, and
// another address still gets in.
func TestWebSocketCapPerAddress(t *testing.T) {
	const perIP, extra = 5, 20
	g := startGateway(t, gatewayOptions{env: map[string]string{"SWITCHBOARD_WS_MAX_CONNS_PER_IP": strconv.Itoa(perIP)}})
	one := loopback(1)
	for range perIP {
		c, status := dialWS(t, g, one)
		if status != http.StatusSwitchingProtocols {
			t.Fatalf("connection within the cap: HTTP %d", status)
		}
		ping(t, c)
	}
	for i := range extra {
		if _, status := dialWS(t, g, one); status != http.StatusServiceUnavailable {
			t.Fatalf("connection %d beyond the cap: HTTP %d, want 503", i+1, status)
		}
	}
	c, status := dialWS(t, g, loopback(2))
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("connection from another address: HTTP %d", status)
	}
	ping(t, c)
	g.expectMetric(t, `switchboard_sip_connections_refused_total{reason="per_address",transport="ws"}`, extra)
	g.expectMetric(t, `switchboard_sip_connections{state="unregistered",transport="ws"}`, perIP+1)
}

// TestTCPCapPerSlash64 runs in a network namespace where 2001:db8:1::/64
// and 2001:db8:2::/64 are local: connections from many addresses of one
// /64 count against one per-address cap.
func TestTCPCapPerSlash64(t *testing.T) {
	isolated(t, netns.Options{LocalRoutes: []string{"2001:db8:1::/64", "2001:db8:2::/64"}}, func(t *testing.T) {
		const perIP, extra = 4, 6
		tcpAddr := net.JoinHostPort("::1", strconv.Itoa(freePort(t, "tcp", "::1")))
		g := startGateway(t, gatewayOptions{env: map[string]string{
			"SWITCHBOARD_SIP_TCP":              tcpAddr,
			"SWITCHBOARD_TCP_MAX_CONNS_PER_IP": strconv.Itoa(perIP),
		}})
		src := func(prefix, i int) netip.Addr {
			return netip.MustParseAddr(fmt.Sprintf("2001:db8:%d::%x:%x", prefix, (i*7919)%0x10000, i+1))
		}
		for i := range perIP {
			ping(t, dialTCP(t, src(1, i), tcpAddr))
		}
		for i := range extra {
			dialTCP(t, src(1, perIP+i), tcpAddr).closed()
		}
		ping(t, dialTCP(t, src(2, 0), tcpAddr))
		g.expectMetric(t, `switchboard_sip_connections_refused_total{reason="per_address",transport="tcp"}`, extra)
		g.expectMetric(t, `switchboard_sip_connections{state="unregistered",transport="tcp"}`, perIP+1)
	})
}

// TestRegisteredSurvivesStrangers: strangers fill the total cap and keep
// coming; each newcomer evicts the oldest stranger, never the registered
// client, whose connection keeps carrying requests both ways.
func TestRegisteredSurvivesStrangers(t *testing.T) {
	const total, more = 5, 12
	for _, tc := range []struct {
		name string
		env  string
		dial func(t *testing.T, g *gateway, src netip.Addr) sipConn
	}{
		{"tcp", "SWITCHBOARD_TCP_MAX_CONNS", func(t *testing.T, g *gateway, src netip.Addr) sipConn {
			return dialTCP(t, src, g.sipAddr())
		}},
		{"ws", "SWITCHBOARD_WS_MAX_CONNS", func(t *testing.T, g *gateway, src netip.Addr) sipConn {
			c, status := dialWS(t, g, src)
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("websocket from %s: HTTP %d", src, status)
			}
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, gatewayOptions{env: map[string]string{tc.env: strconv.Itoa(total)}})
			alice := tc.dial(t, g, loopback(1))
			registerOver(t, alice, "alice", tc.name)
			g.expectMetric(t, `switchboard_sip_connections{state="registered",transport="`+tc.name+`"}`, 1)

			// Strangers fill the cap, each one known open by its answer.
			var strangers []sipConn
			for i := range total - 1 {
				c := tc.dial(t, g, loopback(10+i))
				ping(t, c)
				strangers = append(strangers, c)
			}
			// Every newcomer gets in, and the oldest stranger goes.
			for i := range more {
				c := tc.dial(t, g, loopback(100+i))
				ping(t, c)
				strangers[0].closed()
				strangers = append(strangers[1:], c)
			}
			// alice's connection still works both ways.
			ping(t, alice)
			reachable(t, g, alice, "alice")
			g.expectMetric(t, `switchboard_sip_connections_evicted_total{transport="`+tc.name+`"}`, more)
			g.expectMetric(t, `switchboard_sip_connections{state="registered",transport="`+tc.name+`"}`, 1)
			g.expectMetric(t, `switchboard_sip_connections{state="unregistered",transport="`+tc.name+`"}`, total-1)
			g.expectMetric(t, `switchboard_sip_connections_refused_total{reason="total",transport="`+tc.name+`"}`, 0)
		})
	}
}
