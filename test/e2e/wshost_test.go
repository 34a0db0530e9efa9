package e2e

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/sip"
)

// TestWebSocketHost is the DNS rebinding check of /ws: a handshake whose
// Host is not a name of the gateway is refused with 403 and logged with
// its source, even when its Origin matches its Host (as a rebound page's
// does); the gateway's own names work, and carry SIP.
func TestWebSocketHost(t *testing.T) {
	g := startGateway(t, gatewayOptions{env: map[string]string{
		"SWITCHBOARD_WS_HOSTS": "sip.example.test",
	}})
	port := strconv.Itoa(g.httpPort)
	httpAddr := net.JoinHostPort(g.host, port)

	dial := func(host string) (*websocket.Conn, int) {
		t.Helper()
		origin := "http://" + httpAddr
		if host != "" {
			origin = "http://" + host
		}
		ctx, cancel := context.WithTimeout(context.Background(), webrtcWait)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, "ws://"+httpAddr+"/ws", &websocket.DialOptions{
			Host:         host,
			Subprotocols: []string{"sip"},
			HTTPHeader:   http.Header{"Origin": {origin}},
		})
		if err == nil {
			t.Cleanup(func() { c.CloseNow() })
			return c, http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatalf("Host %q: %v", host, err)
		}
		return nil, resp.StatusCode
	}

	for _, host := range []string{"attacker.example", "attacker.example:" + port, "sip.example.test.attacker.example:" + port} {
		if _, status := dial(host); status != http.StatusForbidden {
			t.Errorf("Host %q: HTTP %d, want 403", host, status)
		}
	}
	logged := false
	for line := range strings.Lines(readFile(g.logPath)) {
		if strings.Contains(line, "sipws: host refused") && strings.Contains(line, "host=attacker.example ") &&
			strings.Contains(line, "remote=127.0.0.1:") {
			logged = true
		}
	}
	if !logged {
		t.Error("the gateway did not log the refused Host with its source")
	}

	for _, host := range []string{"", "127.0.0.1", "localhost:" + port, "sip.example.test", "SIP.Example.Test:443"} {
		c, status := dial(host)
		if status != http.StatusSwitchingProtocols {
			t.Errorf("Host %q: HTTP %d, want 101", host, status)
			continue
		}
		// SIP flows: a REGISTER without credentials is challenged.
		callID := sip.NewCallID()
		reg := "REGISTER sip:" + domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=" + sip.NewBranch() + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:alice@" + domain + ">;tag=" + sip.NewTag() + "\r\n" +
			"To: <sip:alice@" + domain + ">\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: 1 REGISTER\r\n" +
			"Contact: <sip:k3bd9q2r@df7jal23ls0d.invalid;transport=ws>\r\n" +
			"Content-Length: 0\r\n\r\n"
		ctx, cancel := context.WithTimeout(context.Background(), webrtcWait)
		if err := c.Write(ctx, websocket.MessageText, []byte(reg)); err != nil {
			cancel()
			t.Fatalf("Host %q: write: %v", host, err)
		}
		_, data, err := c.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Host %q: no answer to REGISTER: %v", host, err)
		}
		res, err := sip.ParseMessage(data)
		if r, ok := res.(*sip.Response); err != nil || !ok || r.StatusCode != 401 || r.CallID() != callID {
			t.Errorf("Host %q: REGISTER got %q, want a 401", host, data)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
}
