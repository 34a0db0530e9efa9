package mediapeer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
)

// LeanBrowser is the media end of a browser built from pion's parts
// without a PeerConnection, for load generators: one UDP socket, ICE
// checks as the controlling agent (pion/stun), DTLS (pion/dtls) over the
// same socket, and one SRTP context each way (pion/srtp). It offers one
// audio m-line, PCMU and telephone-event, bundled and rtcp-muxed, and
// costs a few system calls and one AES operation per packet, where a
// PeerConnection hands each packet through several goroutines.
//
// The caller owns the read loop, so that it can take what it needs of each
// datagram (a kernel receive timestamp, say): it hands every datagram read
// from Conn to Handle, which answers STUN, feeds DTLS and decrypts SRTP;
// or it calls Serve, which does that with a plain read. Connect needs the
// read loop running.
type LeanBrowser struct {
	conn  leanWire
	own   *net.UDPConn // the browser's own socket, closed by Close; nil on a generator's shared socket
	local netip.AddrPort
	ufrag string
	pwd   string
	cert  tls.Certificate
	print string // sha-256 fingerprint of cert, as SDP writes it
	ssrc  uint32
	tie   uint64 // ICE tiebreaker
	offer string

	remote atomic.Pointer[leanRemote] // set by SetAnswer
	// the transactions of the last nominating check and keepalive
	checkID, keepID atomic.Pointer[[stun.TransactionIDSize]byte]
	iceUp           chan struct{} // closed on the first answer to our check
	iceOnce         sync.Once
	pipe            *dtlsPipe
	dtls            *dtls.Conn

	// The SRTP contexts: out is the sender's (one goroutine at a time),
	// in is the read loop's, set once the keys are known.
	out    *srtp.Context
	outBuf []byte
	in     atomic.Pointer[srtp.Context]

	rtcp, stunIn, consent, dropped, undecryptable atomic.Int64
	closeOnce                                     sync.Once
}

// leanWire is what a LeanBrowser sends on: its own socket, or a load
// generator's socket shared by many browsers, which sends from the
// browser's address.
type leanWire interface {
	WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error)
}

// leanRemote is what the answer said of the far end.
type leanRemote struct {
	addr       netip.AddrPort
	ufrag, pwd string
	print      string // sha-256 fingerprint, upper-case hex with colons
	dtlsClient bool   // we are the DTLS client (the answer said passive)
}

// LeanStats counts what a LeanBrowser's read loop handled besides RTP.
type LeanStats struct {
	// STUN messages answered or taken as the answer to a check.
	STUN int64
	// Consent: answers to Keepalive.
	Consent int64
	// RTCP packets received (SRTCP, not decrypted).
	RTCP int64
	// Dropped: datagrams refused (unknown source, bad or stale STUN,
	// anything before the answer, SRTP before the keys), Undecryptable
	// among them the SRTP packets that did not decrypt.
	Dropped, Undecryptable int64
}

// Errors of LeanBrowser.
var (
	// ErrLeanAnswer: the answer lacks what the browser needs, or offers
	// what it refuses (a candidate off loopback).
	ErrLeanAnswer = errors.New("lean browser: unusable answer")
	// ErrLeanNotConnected: WriteRTP before Connect.
	ErrLeanNotConnected = errors.New("lean browser: not connected")
)

const (
	leanPCMU   = 0
	leanDTMF   = 126
	leanPrflx  = 110<<24 | 65535<<8 | 255 // PRIORITY of our checks (peer reflexive, RFC 8445 §5.1.2)
	leanHost   = 126<<24 | 65535<<8 | 255
	leanRetry  = 50 * time.Millisecond // ICE check retransmission
	leanPipeIn = 32                    // DTLS records queued for the handshake
	leanMaxRTP = 1200                  // the largest RTP packet WriteRTP sends
)

// NewLeanBrowser makes a browser on conn, which must be bound to a
// loopback IPv4 address; the browser owns conn from then on and closes it
// with Close. Its certificate is made afresh unless cert is given (many
// browsers of one load generator may share one).
func NewLeanBrowser(conn *net.UDPConn, cert *tls.Certificate) (*LeanBrowser, error) {
	la, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok || la.IP.To4() == nil || !la.IP.IsLoopback() {
		return nil, fmt.Errorf("lean browser: %v is not a loopback IPv4 address", conn.LocalAddr())
	}
	l, err := newLeanBrowser(conn, la.AddrPort(), cert)
	if err != nil {
		return nil, err
	}
	l.own = conn
	return l, nil
}

// newLeanBrowser makes a browser that sends on w from local, which must
// be a loopback IPv4 address.
func newLeanBrowser(w leanWire, local netip.AddrPort, cert *tls.Certificate) (*LeanBrowser, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	if !local.Addr().Is4() || !local.Addr().IsLoopback() || local.Port() == 0 {
		return nil, fmt.Errorf("lean browser: %v is not a loopback IPv4 address", local)
	}
	l := &LeanBrowser{conn: w, local: local, iceUp: make(chan struct{}), outBuf: make([]byte, 2*leanMaxRTP+64)}
	if cert != nil {
		l.cert = *cert
	} else {
		c, err := selfsign.GenerateSelfSigned()
		if err != nil {
			return nil, fmt.Errorf("lean browser: certificate: %w", err)
		}
		l.cert = c
	}
	if len(l.cert.Certificate) == 0 {
		return nil, errors.New("lean browser: certificate without DER")
	}
	l.print = fingerprint(l.cert.Certificate[0])
	l.ufrag, l.pwd = rand.Text()[:16], rand.Text()
	var b [12]byte
	_, _ = rand.Read(b[:])
	l.ssrc, l.tie = binary.BigEndian.Uint32(b[:4]), binary.BigEndian.Uint64(b[4:])
	if l.ssrc == 0 {
		l.ssrc = 1
	}
	l.pipe = newDTLSPipe(l)
	offer, err := l.makeOffer()
	if err != nil {
		return nil, err
	}
	l.offer = offer
	return l, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var s strings.Builder
	for i, c := range sum {
		if i > 0 {
			s.WriteByte(':')
		}
		fmt.Fprintf(&s, "%02X", c)
	}
	return s.String()
}

func (l *LeanBrowser) makeOffer() (string, error) {
	d, err := sdp.NewJSEPSessionDescription(false)
	if err != nil {
		return "", fmt.Errorf("lean browser: offer: %w", err)
	}
	d.WithValueAttribute(sdp.AttrKeyGroup, "BUNDLE 0").WithValueAttribute(sdp.AttrKeyMsidSemantic, "WMS lean")
	m := sdp.NewJSEPMediaDescription("audio", nil).
		WithCodec(leanPCMU, "PCMU", 8000, 0, "").
		WithCodec(leanDTMF, "telephone-event", 8000, 0, "0-16").
		WithValueAttribute("candidate", fmt.Sprintf("1 1 udp %d %s %d typ host", leanHost, l.local.Addr(), l.local.Port())).
		WithPropertyAttribute("end-of-candidates").
		WithICECredentials(l.ufrag, l.pwd).
		WithFingerprint("sha-256", l.print).
		WithValueAttribute(sdp.AttrKeyConnectionSetup, "actpass").
		WithValueAttribute(sdp.AttrKeyMID, "0").
		WithPropertyAttribute(sdp.AttrKeyRTCPMux).
		WithPropertyAttribute("sendrecv").
		WithMediaSource(l.ssrc, "lean", "lean", "lean-audio")
	d.WithMedia(m)
	b, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("lean browser: offer: %w", err)
	}
	return string(b), nil
}

// Offer is the browser's SDP offer.
func (l *LeanBrowser) Offer() string { return l.offer }

// SSRC is the SSRC the browser announces and sends with.
func (l *LeanBrowser) SSRC() uint32 { return l.ssrc }

// LocalAddr is the browser's address, its one candidate.
func (l *LeanBrowser) LocalAddr() netip.AddrPort { return l.local }

// Stats returns the read loop's counters.
func (l *LeanBrowser) Stats() LeanStats {
	return LeanStats{STUN: l.stunIn.Load(), Consent: l.consent.Load(), RTCP: l.rtcp.Load(),
		Dropped: l.dropped.Load(), Undecryptable: l.undecryptable.Load()}
}

// SetAnswer takes the far end's answer: its ICE credentials, fingerprint,
// DTLS role and first UDP IPv4 candidate, which must be on loopback.
func (l *LeanBrowser) SetAnswer(answer string) error {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		return fmt.Errorf("%w: %w", ErrLeanAnswer, err)
	}
	if len(d.MediaDescriptions) == 0 {
		return fmt.Errorf("%w: no m-line", ErrLeanAnswer)
	}
	r := &leanRemote{}
	// Session-level values, which the first m-line's override.
	attr := func(key string) string {
		if v, ok := d.MediaDescriptions[0].Attribute(key); ok {
			return v
		}
		v, _ := d.Attribute(key)
		return v
	}
	r.ufrag, r.pwd = attr("ice-ufrag"), attr("ice-pwd")
	if r.ufrag == "" || r.pwd == "" {
		return fmt.Errorf("%w: no ICE credentials", ErrLeanAnswer)
	}
	alg, print, _ := strings.Cut(attr("fingerprint"), " ")
	if !strings.EqualFold(alg, "sha-256") || print == "" {
		return fmt.Errorf("%w: no sha-256 fingerprint", ErrLeanAnswer)
	}
	r.print = strings.ToUpper(print)
	switch setup := attr(sdp.AttrKeyConnectionSetup); setup {
	case "active":
	case "passive":
		r.dtlsClient = true
	default:
		return fmt.Errorf("%w: setup %q", ErrLeanAnswer, setup)
	}
	for _, a := range d.MediaDescriptions[0].Attributes {
		if a.Key != "candidate" {
			continue
		}
		f := strings.Fields(a.Value)
		if len(f) < 8 || !strings.EqualFold(f[2], "udp") || f[1] != "1" {
			continue
		}
		ip, err := netip.ParseAddr(f[4])
		port, perr := strconv.ParseUint(f[5], 10, 16)
		if err != nil || perr != nil || !ip.Is4() || port == 0 {
			continue
		}
		if !ip.IsLoopback() {
			return fmt.Errorf("%w: candidate %s off loopback", ErrLeanAnswer, ip)
		}
		r.addr = netip.AddrPortFrom(ip, uint16(port))
		break
	}
	if !r.addr.IsValid() {
		return fmt.Errorf("%w: no UDP IPv4 candidate", ErrLeanAnswer)
	}
	if !l.remote.CompareAndSwap(nil, r) {
		return fmt.Errorf("%w: answer already set", ErrLeanAnswer)
	}
	return nil
}

// Connect runs ICE (checks with USE-CANDIDATE until one is answered), then
// the DTLS handshake, and keys SRTP from it. The read loop must be
// running. The far end's certificate must match the answer's fingerprint.
func (l *LeanBrowser) Connect(ctx context.Context) error {
	r := l.remote.Load()
	if r == nil {
		return fmt.Errorf("%w: no answer", ErrLeanAnswer)
	}
	tk := time.NewTicker(leanRetry)
	defer tk.Stop()
	for up := false; !up; {
		if err := l.check(r, true); err != nil {
			return err
		}
		select {
		case <-l.iceUp:
			up = true
		case <-tk.C:
		case <-ctx.Done():
			return fmt.Errorf("lean browser: ICE: %w", context.Cause(ctx))
		}
	}
	shared := []dtls.Option{
		dtls.WithCertificates(l.cert),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		// WebRTC trusts the certificate by the fingerprint in the SDP,
		// not by a chain.
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || fingerprint(raw[0]) != r.print {
				return errors.New("lean browser: the far end's certificate does not match its fingerprint")
			}
			return nil
		}),
	}
	raddr := net.UDPAddrFromAddrPort(r.addr)
	var err error
	if r.dtlsClient {
		opts := make([]dtls.ClientOption, 0, len(shared))
		for _, o := range shared {
			opts = append(opts, o)
		}
		l.dtls, err = dtls.ClientWithOptions(l.pipe, raddr, opts...)
	} else {
		opts := []dtls.ServerOption{dtls.WithClientAuth(dtls.RequireAnyClientCert)}
		for _, o := range shared {
			opts = append(opts, o)
		}
		l.dtls, err = dtls.ServerWithOptions(l.pipe, raddr, opts...)
	}
	if err != nil {
		return fmt.Errorf("lean browser: DTLS: %w", err)
	}
	if err := l.dtls.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("lean browser: DTLS handshake: %w", err)
	}
	dp, ok := l.dtls.SelectedSRTPProtectionProfile()
	if !ok {
		return errors.New("lean browser: no SRTP profile agreed")
	}
	var prof srtp.ProtectionProfile
	switch dp {
	case dtls.SRTP_AEAD_AES_128_GCM:
		prof = srtp.ProtectionProfileAeadAes128Gcm
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		prof = srtp.ProtectionProfileAes128CmHmacSha1_80
	default:
		return fmt.Errorf("lean browser: SRTP profile %#x", dp)
	}
	state, ok := l.dtls.ConnectionState()
	if !ok {
		return errors.New("lean browser: no DTLS state")
	}
	sc := srtp.Config{Profile: prof}
	if err := sc.ExtractSessionKeysFromDTLS(&state, r.dtlsClient); err != nil {
		return fmt.Errorf("lean browser: SRTP keys: %w", err)
	}
	out, err := srtp.CreateContext(sc.Keys.LocalMasterKey, sc.Keys.LocalMasterSalt, prof)
	if err != nil {
		return fmt.Errorf("lean browser: SRTP: %w", err)
	}
	in, err := srtp.CreateContext(sc.Keys.RemoteMasterKey, sc.Keys.RemoteMasterSalt, prof)
	if err != nil {
		return fmt.Errorf("lean browser: SRTP: %w", err)
	}
	l.out = out
	l.in.Store(in)
	return nil
}

// Keepalive sends one ICE check on the selected pair (consent, RFC 7675):
// the far end hears from the browser while no media flows.
func (l *LeanBrowser) Keepalive() error {
	r := l.remote.Load()
	if r == nil || l.in.Load() == nil {
		return ErrLeanNotConnected
	}
	return l.check(r, false)
}

func (l *LeanBrowser) check(r *leanRemote, nominate bool) error {
	id := stun.NewTransactionID()
	if nominate {
		l.checkID.Store(&id)
	} else {
		l.keepID.Store(&id)
	}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(id), stun.BindingRequest,
		stun.NewUsername(r.ufrag + ":" + l.ufrag),
		ice.PriorityAttr(leanPrflx), ice.AttrControlling(l.tie),
	}
	if nominate {
		setters = append(setters, ice.UseCandidate())
	}
	setters = append(setters, stun.NewShortTermIntegrity(r.pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		return fmt.Errorf("lean browser: ICE check: %w", err)
	}
	if _, err := l.conn.WriteToUDPAddrPort(m.Raw, r.addr); err != nil {
		return fmt.Errorf("lean browser: ICE check: %w", err)
	}
	return nil
}

// Handle takes one datagram that the read loop read from the browser's
// socket. An SRTP packet from the far end comes back decrypted in place
// in b: its header in h and its payload, with ok true. Everything else is
// dealt with (STUN answered, DTLS handed to the handshake, SRTCP counted)
// or dropped, and ok is false; err is set only for SRTP that does not
// decrypt.
func (l *LeanBrowser) Handle(b []byte, from netip.AddrPort, h *rtp.Header) (payload []byte, ok bool, err error) {
	if len(b) == 0 {
		l.dropped.Add(1)
		return nil, false, nil
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	r := l.remote.Load()
	switch c := b[0]; {
	case c < 4:
		l.handleSTUN(b, from, r)
		return nil, false, nil
	case r == nil || from != r.addr:
		l.dropped.Add(1)
		return nil, false, nil
	case c >= 20 && c < 64:
		l.pipe.put(b)
		return nil, false, nil
	case c >= 128 && c < 192 && len(b) >= 12:
		if b[1] >= 192 && b[1] <= 223 { // RTCP (RFC 5761 §4)
			l.rtcp.Add(1)
			return nil, false, nil
		}
		in := l.in.Load()
		if in == nil {
			l.dropped.Add(1)
			return nil, false, nil
		}
		d, err := in.DecryptRTP(b, b, h)
		if err != nil {
			l.dropped.Add(1)
			l.undecryptable.Add(1)
			return nil, false, fmt.Errorf("lean browser: SRTP: %w", err)
		}
		return d[h.MarshalSize():], true, nil
	default:
		l.dropped.Add(1)
		return nil, false, nil
	}
}

// handleSTUN answers the far end's checks (a full ICE agent checks too,
// and nominates only a pair its own check succeeded on) and takes the
// answer to ours.
func (l *LeanBrowser) handleSTUN(b []byte, from netip.AddrPort, r *leanRemote) {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil || r == nil || from != r.addr {
		l.dropped.Add(1)
		return
	}
	switch m.Type {
	case stun.BindingRequest:
		var u stun.Username
		if u.GetFrom(m) != nil || !strings.HasPrefix(u.String(), l.ufrag+":") ||
			stun.Fingerprint.Check(m) != nil || stun.NewShortTermIntegrity(l.pwd).Check(m) != nil {
			l.dropped.Add(1)
			return
		}
		resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
			stun.NewShortTermIntegrity(l.pwd), stun.Fingerprint)
		if err != nil {
			l.dropped.Add(1)
			return
		}
		l.stunIn.Add(1)
		_, _ = l.conn.WriteToUDPAddrPort(resp.Raw, from)
	case stun.BindingSuccess:
		check, keep := l.checkID.Load(), l.keepID.Load()
		nominated := check != nil && *check == m.TransactionID
		if !nominated && (keep == nil || *keep != m.TransactionID) || stun.NewShortTermIntegrity(r.pwd).Check(m) != nil {
			l.dropped.Add(1)
			return
		}
		l.stunIn.Add(1)
		if nominated {
			l.iceOnce.Do(func() { close(l.iceUp) })
		} else {
			l.consent.Add(1)
		}
	default:
		l.dropped.Add(1)
	}
}

// WriteRTP encrypts and sends one RTP packet on the browser's SSRC (h.SSRC
// is set to it). It allocates nothing; one goroutine at a time.
func (l *LeanBrowser) WriteRTP(h *rtp.Header, payload []byte) error {
	enc, to, err := l.sealRTP(l.outBuf[leanMaxRTP:leanMaxRTP], h, payload)
	if err != nil {
		return err
	}
	_, err = l.conn.WriteToUDPAddrPort(enc, to)
	return err
}

// sealRTP encrypts one RTP packet on the browser's SSRC, appending it to
// dst (which should have room for leanMaxRTP and the tag so as to allocate
// nothing), and says where it goes: WriteRTP without the write, for a
// generator that sends many browsers' packets in one system call. One
// goroutine at a time, as WriteRTP.
func (l *LeanBrowser) sealRTP(dst []byte, h *rtp.Header, payload []byte) ([]byte, netip.AddrPort, error) {
	if l.out == nil {
		return nil, netip.AddrPort{}, ErrLeanNotConnected
	}
	r := l.remote.Load()
	h.SSRC = l.ssrc
	h.Version = 2
	hl := h.MarshalSize()
	if hl+len(payload) > leanMaxRTP {
		return nil, netip.AddrPort{}, fmt.Errorf("lean browser: RTP packet of %d bytes", hl+len(payload))
	}
	plain := l.outBuf[:hl+len(payload)]
	if _, err := h.MarshalTo(plain); err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("lean browser: RTP header: %w", err)
	}
	copy(plain[hl:], payload)
	enc, err := l.out.EncryptRTP(dst, plain, h)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("lean browser: SRTP: %w", err)
	}
	return enc, r.addr, nil
}

// Serve is a read loop for callers that need nothing more than the
// decrypted packets: it reads until the socket is closed and hands each
// RTP packet to onRTP (the payload is only valid during the call).
func (l *LeanBrowser) Serve(onRTP func(h *rtp.Header, payload []byte)) {
	if l.own == nil {
		return // a generator's browser: its generator reads
	}
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, from, err := l.own.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if p, ok, _ := l.Handle(buf[:n], from, &h); ok && onRTP != nil {
			onRTP(&h, p)
		}
	}
}

// Close ends the DTLS session (close_notify) and closes the browser's own
// socket, which ends the read loop (a generator's shared socket stays
// open).
func (l *LeanBrowser) Close() error {
	var err error
	l.closeOnce.Do(func() {
		if l.dtls != nil {
			err = l.dtls.Close()
		}
		l.pipe.close()
		if l.own == nil {
			return
		}
		if cerr := l.own.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// dtlsPipe is the net.PacketConn DTLS runs over: it reads the records the
// read loop hands it and writes to the far end on the browser's socket.
type dtlsPipe struct {
	l      *LeanBrowser
	in     chan []byte
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	kick     chan struct{} // closed when the deadline changes
}

func newDTLSPipe(l *LeanBrowser) *dtlsPipe {
	return &dtlsPipe{l: l, in: make(chan []byte, leanPipeIn), closed: make(chan struct{}), kick: make(chan struct{})}
}

// put queues a copy of record, dropping it when the queue is full (DTLS
// retransmits).
func (p *dtlsPipe) put(record []byte) {
	select {
	case p.in <- append([]byte(nil), record...):
	default:
		p.l.dropped.Add(1)
	}
}

func (p *dtlsPipe) close() { p.once.Do(func() { close(p.closed) }) }

func (p *dtlsPipe) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		p.mu.Lock()
		d, kick := p.deadline, p.kick
		p.mu.Unlock()
		var t *time.Timer
		var expire <-chan time.Time
		if !d.IsZero() {
			wait := time.Until(d)
			if wait <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(wait)
			expire = t.C
		}
		var rec []byte
		select {
		case rec = <-p.in:
		case <-p.closed:
			return 0, nil, net.ErrClosed
		case <-kick:
		case <-expire:
		}
		if t != nil {
			t.Stop()
		}
		if rec != nil {
			return copy(b, rec), net.UDPAddrFromAddrPort(p.l.remote.Load().addr), nil
		}
	}
}

func (p *dtlsPipe) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	return p.l.conn.WriteToUDPAddrPort(b, p.l.remote.Load().addr)
}

func (p *dtlsPipe) Close() error                     { p.close(); return nil }
func (p *dtlsPipe) LocalAddr() net.Addr              { return net.UDPAddrFromAddrPort(p.l.local) }
func (p *dtlsPipe) SetWriteDeadline(time.Time) error { return nil }
func (p *dtlsPipe) SetDeadline(t time.Time) error    { return p.SetReadDeadline(t) }

func (p *dtlsPipe) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	close(p.kick)
	p.kick = make(chan struct{})
	p.mu.Unlock()
	return nil
}

// ServeLean runs l's read loop (Serve) for t and returns the payloads of
// the RTP packets l receives; one that finds the channel full is dropped.
// l is closed, and its loop waited for, when t ends.
func ServeLean(t testing.TB, l *LeanBrowser) <-chan []byte {
	got := make(chan []byte, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		l.Serve(func(_ *rtp.Header, p []byte) {
			select {
			case got <- append([]byte(nil), p...):
			default:
			}
		})
	})
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	return got
}

// AudioToLean calls send every 20 ms until the payload want comes on got
// (from ServeLean); it fails t when another payload comes first, or none
// within DefaultWait.
func AudioToLean(t testing.TB, send func(), got <-chan []byte, want string) {
	t.Helper()
	deadline := time.After(DefaultWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		send()
		select {
		case p := <-got:
			if string(p) != want {
				t.Fatalf("lean browser: got %q, want %q", p, want)
			}
			return
		case <-tick.C:
		case <-deadline:
			t.Fatalf("lean browser: %q did not arrive within %v", want, DefaultWait)
		}
	}
}
