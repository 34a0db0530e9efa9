package transporttest

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

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
	return response(p.t, b)
}

func response(t testing.TB, b []byte) *sip.Response {
	t.Helper()
	m, err := sip.ParseMessage(b)
	if err != nil {
		t.Fatalf("response does not parse: %v\n%s", err, b)
	}
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("not a response: %s", b)
	}
	return res
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

// Write writes s.
func (p *TCPPeer) Write(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.Conn, s); err != nil {
		p.t.Fatal(err)
	}
}

// Message reads one SIP message, framed by its Content-Length, waiting
// up to Timeout. CRLFs before it (keep-alive answers) are passed over.
func (p *TCPPeer) Message() sip.Message {
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
	m, err := sip.ParseMessage(msg)
	if err != nil {
		p.t.Fatalf("message does not parse: %v\n%s", err, msg)
	}
	return m
}

// Response reads one message, which must be a response.
func (p *TCPPeer) Response() *sip.Response {
	p.t.Helper()
	res, ok := p.Message().(*sip.Response)
	if !ok {
		p.t.Fatal("got a request, want a response")
	}
	return res
}

// Request reads one message, which must be a request.
func (p *TCPPeer) Request() *sip.Request {
	p.t.Helper()
	req, ok := p.Message().(*sip.Request)
	if !ok {
		p.t.Fatal("got a response, want a request")
	}
	return req
}

// Read reads exactly n bytes (a keep-alive's "\r\n" answer, say) within
// Timeout.
func (p *TCPPeer) Read(n int) (string, error) {
	p.Conn.SetReadDeadline(time.Now().Add(Timeout))
	b := make([]byte, n)
	_, err := io.ReadFull(p.R, b)
	return string(b), err
}

// EOF waits up to Timeout for the other end to close the connection,
// reading and dropping what comes before.
func (p *TCPPeer) EOF() {
	p.t.Helper()
	p.Conn.SetReadDeadline(time.Now().Add(Timeout))
	if _, err := io.Copy(io.Discard, p.R); err != nil {
		p.t.Fatalf("connection not closed: %v", err)
	}
}
