package transporttest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/sip"
)

// OptionsRequest returns an OPTIONS request as a phone behind a NAT sends
// it over transport (sip.UDP, sip.TCP, sip.TLS): its Via names a private
// address, 10.0.0.1:5062, and asks for rport.
func OptionsRequest(callID, transport string) string {
	return "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " 10.0.0.1:5062;branch=z9hG4bK" + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:gw@127.0.0.1>\r\n" +
		"From: <sip:alice@example.com>;tag=1928301774\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// ParseRequest parses raw, which must be a request.
func ParseRequest(t testing.TB, raw string) *sip.Request {
	t.Helper()
	return parse[*sip.Request](t, []byte(raw))
}

// UDPPeer is a plain UDP socket on loopback playing a phone: it sends raw
// text and reads what comes back. Its methods fail the test, so call them
// from the test's goroutine.
type UDPPeer struct {
	t    testing.TB
	Conn *net.UDPConn
}

// ListenUDP opens a UDPPeer on addr of network ("udp4", "udp6"), closed
// when the test ends.
func ListenUDP(t testing.TB, network, addr string) *UDPPeer {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &UDPPeer{t, c}
}

// Addr returns the address the peer sends from.
func (p *UDPPeer) Addr() netip.AddrPort { return p.Conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Send sends data to to in one datagram.
func (p *UDPPeer) Send(to sip.Addr, data string) {
	p.t.Helper()
	if _, err := p.Conn.WriteToUDPAddrPort([]byte(data), to.AddrPort); err != nil {
		p.t.Fatal(err)
	}
}

// Read returns the next datagram, waiting up to Timeout, and where it came
// from.
func (p *UDPPeer) Read() ([]byte, netip.AddrPort) {
	p.t.Helper()
	buf := make([]byte, 65536)
	p.Conn.SetReadDeadline(time.Now().Add(Timeout))
	n, from, err := p.Conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return buf[:n], from
}

// Response reads the next datagram, which must be a SIP response.
func (p *UDPPeer) Response() *sip.Response {
	p.t.Helper()
	b, _ := p.Read()
	return parse[*sip.Response](p.t, b)
}

// parse parses b as a message of type M: sip.Message, *sip.Request or
// *sip.Response. It fails the test when b is anything else.
func parse[M sip.Message](t testing.TB, b []byte) M {
	t.Helper()
	m, err := sip.ParseMessage(b)
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, b)
	}
	got, ok := m.(M)
	if !ok {
		t.Fatalf("got a %T, want a %T:\n%s", m, got, b)
	}
	return got
}

// TCPPeer is a raw TCP connection playing a phone. Its methods fail the
// test, so call them from the test's goroutine.
type TCPPeer struct {
	t    testing.TB
	Conn net.Conn
	// R reads Conn; read through it, not Conn, once a method has.
	R *bufio.Reader
}

// DialTCP connects a TCPPeer to to, closed when the test ends.
func DialTCP(t testing.TB, to sip.Addr) *TCPPeer {
	t.Helper()
	return dialTCP(t, net.Dialer{Timeout: Timeout}, to)
}

// DialTCPFrom connects a TCPPeer to to from the source address src
// (127.0.0.2, or an address of a namespace's; see internal/netns).
func DialTCPFrom(t testing.TB, src netip.Addr, to sip.Addr) *TCPPeer {
	t.Helper()
	return dialTCP(t, net.Dialer{Timeout: Timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}, to)
}

func dialTCP(t testing.TB, d net.Dialer, to sip.Addr) *TCPPeer {
	t.Helper()
	c, err := d.Dial("tcp", to.AddrPort.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &TCPPeer{t, c, bufio.NewReader(c)}
}

// Addr returns the address the peer sends from.
func (p *TCPPeer) Addr() netip.AddrPort { return p.Conn.LocalAddr().(*net.TCPAddr).AddrPort() }

// Write writes s within Timeout.
func (p *TCPPeer) Write(s string) {
	p.t.Helper()
	p.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(p.Conn, s); err != nil {
		p.t.Fatal(err)
	}
}

// Message reads one SIP message, framed by its Content-Length, waiting
// up to Timeout. CRLFs before it (keep-alive answers) are passed over.
func (p *TCPPeer) Message() sip.Message {
	p.t.Helper()
	return parse[sip.Message](p.t, p.frame())
}

// Response reads one message, which must be a response.
func (p *TCPPeer) Response() *sip.Response {
	p.t.Helper()
	return parse[*sip.Response](p.t, p.frame())
}

// Request reads one message, which must be a request.
func (p *TCPPeer) Request() *sip.Request {
	p.t.Helper()
	return parse[*sip.Request](p.t, p.frame())
}

// frame reads the bytes of one message, as Message does.
func (p *TCPPeer) frame() []byte {
	p.t.Helper()
	p.Conn.SetReadDeadline(time.Now().Add(Timeout))
	var head []byte
	length := 0
	for {
		line, err := p.R.ReadString('\n')
		if err != nil {
			p.t.Fatalf("read message: %v (so far %q)", err, head)
		}
		if line == "\r\n" && len(head) == 0 {
			continue
		}
		head = append(head, line...)
		if line == "\r\n" {
			break
		}
		if name, value, ok := strings.Cut(line, ":"); ok {
			if n := strings.ToLower(strings.TrimSpace(name)); n == "content-length" || n == "l" {
				length, _ = strconv.Atoi(strings.TrimSpace(value))
			}
		}
	}
	msg := append(head, make([]byte, length)...)
	if _, err := io.ReadFull(p.R, msg[len(head):]); err != nil {
		p.t.Fatalf("read body of %d bytes: %v", length, err)
	}
	return msg
}

// Read reads exactly n bytes (a keep-alive's "\r\n" answer, say) within
// Timeout.
func (p *TCPPeer) Read(n int) (string, error) {
	p.Conn.SetReadDeadline(time.Now().Add(Timeout))
	b := make([]byte, n)
	_, err := io.ReadFull(p.R, b)
	return string(b), err
}

// EOF waits up to Timeout for the other end to close the connection
// cleanly, reading and dropping what comes before; a reset fails the test
// as the connection staying open does.
func (p *TCPPeer) EOF() {
	p.t.Helper()
	if err := p.drain(); err != nil {
		p.t.Fatalf("connection not closed: %v", err)
	}
}

// Closed waits up to Timeout for the other end to close or reset the
// connection, reading and dropping what comes before.
func (p *TCPPeer) Closed() {
	p.t.Helper()
	var ne net.Error
	if err := p.drain(); errors.As(err, &ne) && ne.Timeout() {
		p.t.Fatalf("connection still open after %v", Timeout)
	}
}

// drain reads until the connection ends, or Timeout, and returns the
// error that ended it: nil for a clean close.
func (p *TCPPeer) drain() error {
	p.Conn.SetReadDeadline(time.Now().Add(Timeout))
	_, err := io.Copy(io.Discard, p.R)
	return err
}

// DialWS opens a SIP WebSocket (subprotocol "sip") to url within Timeout,
// from the source address src unless it is the zero Addr; it is closed
// when the test ends. A refused handshake returns nil and its HTTP
// status, a handshake accepted 101.
func DialWS(t testing.TB, url string, src netip.Addr) (*websocket.Conn, int) {
	t.Helper()
	d := &net.Dialer{Timeout: Timeout}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	defer client.CloseIdleConnections() // a refused handshake's
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, Subprotocols: []string{"sip"}})
	if err != nil {
		if resp == nil {
			t.Fatalf("websocket to %s from %s: %v", url, src, err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, http.StatusSwitchingProtocols
}
