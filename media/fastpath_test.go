package media

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/switchboard/switchboard/clock"
)

// TestFastPathKeys checks the fast path's derivation of the SRTP keys
// against pion's: a real DTLS handshake over loopback, one end on a
// fastConn that watches the hellos and takes the key log, for each role,
// SRTP profile and PRF hash. The keys must be what pion's srtp.Config
// extracts from the other end's dtls.Conn.
func TestFastPathKeys(t *testing.T) {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	profiles := []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM}
	suites := []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
	for _, gatewayClient := range []bool{true, false} {
		for _, profile := range profiles {
			for _, suite := range suites {
				name := dtls.CipherSuiteName(suite) + "/" + itoa(int(profile))
				if gatewayClient {
					name = "client/" + name
				} else {
					name = "server/" + name
				}
				t.Run(name, func(t *testing.T) {
					checkKeys(t, cert, gatewayClient, profile, suite)
				})
			}
		}
	}
}

func checkKeys(t *testing.T, cert tls.Certificate, gatewayClient bool, profile dtls.SRTPProtectionProfile, suite dtls.CipherSuiteID) {
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ours, theirs := listen(), listen()
	keys := newKeyTable(time.Now)
	fc := newFastConn(ours, testLogger(), keys, clock.Real{}, true, -1)
	t.Cleanup(func() { _ = fc.Close() })
	opts := func(keyLog bool) []dtls.Option {
		o := []dtls.Option{
			dtls.WithCertificates(cert),
			dtls.WithInsecureSkipVerify(true),
			dtls.WithCipherSuites(suite),
			dtls.WithSRTPProtectionProfiles(profile),
		}
		if keyLog {
			o = append(o, dtls.WithKeyLogWriter(keys))
		}
		return o
	}
	client := func(c net.PacketConn, to net.Addr, keyLog bool) (*dtls.Conn, error) {
		var co []dtls.ClientOption
		for _, o := range opts(keyLog) {
			co = append(co, o)
		}
		return dtls.ClientWithOptions(c, to, co...)
	}
	server := func(c net.PacketConn, to net.Addr, keyLog bool) (*dtls.Conn, error) {
		var so []dtls.ServerOption
		for _, o := range opts(keyLog) {
			so = append(so, o)
		}
		return dtls.ServerWithOptions(c, to, so...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ourConn, theirConn *dtls.Conn
	var err error
	if gatewayClient {
		ourConn, err = client(fc, theirs.LocalAddr(), true)
		if err == nil {
			theirConn, err = server(theirs, ours.LocalAddr(), false)
		}
	} else {
		ourConn, err = server(fc, theirs.LocalAddr(), true)
		if err == nil {
			theirConn, err = client(theirs, ours.LocalAddr(), false)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ourConn.Close(); _ = theirConn.Close() }()
	done := make(chan error, 1)
	go func() { done <- ourConn.HandshakeContext(ctx) }()
	if err := theirConn.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	got, err := keys.take(theirs.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := srtpProfile(profile)
	want := srtp.Config{Profile: sp}
	state, ok := theirConn.ConnectionState()
	if !ok {
		t.Fatal("no dtls state")
	}
	if err := want.ExtractSessionKeysFromDTLS(&state, !gatewayClient); err != nil {
		t.Fatal(err)
	}
	g, w := got.cfg.Keys, want.Keys
	if got.profile != sp || !bytes.Equal(g.LocalMasterKey, w.RemoteMasterKey) || !bytes.Equal(g.LocalMasterSalt, w.RemoteMasterSalt) ||
		!bytes.Equal(g.RemoteMasterKey, w.LocalMasterKey) || !bytes.Equal(g.RemoteMasterSalt, w.LocalMasterSalt) {
		t.Fatalf("derived keys differ from pion's (profile %v, want %v)", got.profile, sp)
	}
	// Taken once: the secret is gone.
	if _, err := keys.take(theirs.LocalAddr().(*net.UDPAddr).AddrPort()); err == nil {
		t.Fatal("keys taken twice")
	}
}

// connectCall negotiates a call between br and phone on b, the browser
// offering (gateway DTLS client) or answering (gateway DTLS server), and
// waits until the browser is connected.
func connectCall(t *testing.T, b *Bridge, br *testBrowser, phone *testPhone, browserOffers bool) {
	t.Helper()
	if browserOffers {
		if _, err := b.WebOffer(br.Offer()); err != nil {
			t.Fatal(err)
		}
		ans, err := b.RTPAnswer(phone.SDP(1, "0 101"))
		if err != nil {
			t.Fatal(err)
		}
		br.SetAnswer(ans)
	} else {
		offer, err := b.RTPOffer(phone.SDP(1, "0 101"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.WebAnswer(br.Answer(offer)); err != nil {
			t.Fatal(err)
		}
	}
	br.WaitConnected()
}

func waitFastLeg(t *testing.T, b *Bridge) {
	t.Helper()
	waitFor(t, "the leg on the fast path", func() bool { return b.fast.Load() != nil && b.fast.Load().addr.Load() != nil })
}

// fastCall sets up a call on e and waits until its web leg is on the
// fast path.
func fastCall(t *testing.T, e *Engine, browserOffers bool) (*Bridge, *testBrowser, *testPhone) {
	t.Helper()
	b, br, phone := newTestBridge(t, e), newTestBrowser(t), newTestPhone(t)
	connectCall(t, b, br, phone, browserOffers)
	waitFastLeg(t, b)
	prime(t, b, br, phone, 0)
	return b, br, phone
}

// TestFastPath runs calls with the gateway in each DTLS role: the audio
// goes both ways through the fast path, intact and in order, and pion's
// path sees none of it.
func TestFastPath(t *testing.T) {
	checkGoroutines(t)
	for i, browserOffers := range []bool{true, false, true} {
		name := "gateway-dtls-server"
		if browserOffers {
			name = "gateway-dtls-client"
		}
		// The last run reads each RTP socket with a goroutine and the
		// ICE socket a datagram a call, as on other systems.
		noBatch := i == 2
		if noBatch {
			name += "-no-batch"
		}
		t.Run(name, func(t *testing.T) {
			// A fake clock: no packet goes pion's way for the ICE
			// agent's sake after the first.
			clk := newFake()
			e := newTestEngine(t, Options{Clock: clk, noBatch: noBatch})
			if (e.poller == nil) != noBatch || (e.fast.rd == nil) != noBatch {
				t.Fatalf("poller %v, batch reader %v with noBatch %v", e.poller != nil, e.fast.rd != nil, noBatch)
			}
			b, br, phone := fastCall(t, e, browserOffers)
			before := e.Stats().FastPath
			gw := b.RTPAddr()
			const n = 20
			for i := range n {
				br.send(0, uint16(7000+i), uint32(50000+160*i), payload(byte(i), 160))
				if p := phone.recv(); p.PayloadType != 0 || !bytes.Equal(p.Payload, payload(byte(i), 160)) {
					t.Fatalf("phone got pt %d payload %x", p.PayloadType, p.Payload[:4])
				}
			}
			var last uint16
			for i := range n {
				phone.SendPacket(gw, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: uint16(100 + i), Timestamp: uint32(1000 + 160*i), SSRC: 0x1111}, Payload: payload(0x80+byte(i), 160)})
				p := br.recv()
				if !bytes.Equal(p.Payload, payload(0x80+byte(i), 160)) || i > 0 && p.SequenceNumber != last+1 {
					t.Fatalf("browser got seq %d after %d, payload %x", p.SequenceNumber, last, p.Payload[:4])
				}
				last = p.SequenceNumber
			}
			st := e.Stats().FastPath
			if bs := e.Stats().Batch; !noBatch && (bs.ICESent < n || bs.ICESends == 0 || bs.ICESends > bs.ICESent || bs.RTPDatagrams < n || bs.ICEDatagrams < n || bs.Wakeups == 0) || noBatch && bs != (BatchStats{}) {
				t.Fatalf("batch stats %+v after %d packets each way (batches %v)", bs, n, !noBatch)
			}
			if st.Legs != 1 || st.PacketsIn-before.PacketsIn != n || st.PacketsOut-before.PacketsOut != n || st.Fallbacks != 0 || st.Rejected != 0 {
				t.Fatalf("fast path stats %+v after %+v, want %d packets each way on it", st, before, n)
			}
			if !b.Stats().Web.FastPath {
				t.Fatal("the web leg's stats do not say it is on the fast path")
			}
			// A second later pion gets a copy of a packet (its ICE
			// agent hears the browser); the packet reaches the phone
			// once.
			clk.Advance(fastPassEvery)
			br.send(0, 7000+n, 50000+160*n, payload(0x55, 160))
			if p := phone.recv(); !bytes.Equal(p.Payload, payload(0x55, 160)) {
				t.Fatalf("phone got %x", p.Payload[:4])
			}
			if p := phone.Recv(200 * time.Millisecond); p != nil {
				t.Fatalf("phone got seq %d twice: pion relayed its copy", p.SequenceNumber)
			}
			if in, copied := e.Stats().FastPath.PacketsIn, b.fast.Load().copied.Load(); in != st.PacketsIn+1 || copied == 0 {
				t.Fatalf("the packet after a second: %d on the fast path (was %d), pion's copy %#x", in, st.PacketsIn, copied)
			}
			_ = b.Close()
			if st := e.Stats().FastPath; st.Legs != 0 {
				t.Fatalf("legs after close: %d", st.Legs)
			}
			if !b.Stats().Web.FastPath {
				t.Fatal("the ended call's stats do not say its web leg was on the fast path")
			}
		})
	}
}

// TestNoFastPath: with the fast path off the call runs on pion's path.
func TestNoFastPath(t *testing.T) {
	e := newTestEngine(t, Options{NoFastPath: true})
	b, br, phone := newTestBridge(t, e), newTestBrowser(t), newTestPhone(t)
	connectCall(t, b, br, phone, true)
	prime(t, b, br, phone, 0)
	if st := e.Stats().FastPath; st != (FastPathStats{}) {
		t.Fatalf("fast path stats %+v with the fast path off", st)
	}
	if b.Stats().Web.FastPath {
		t.Fatal("the web leg's stats say it is on the fast path, which is off")
	}
}

// attackLeg moves the fast path of b's web leg to a socket of the test,
// as if ICE had selected it, with receive keys the test knows; it returns
// the socket and a context that encrypts as the browser would.
func attackLeg(t *testing.T, e *Engine, b *Bridge, verified bool) (*net.UDPConn, *srtp.Context) {
	t.Helper()
	atk, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = atk.Close() })
	key, salt := bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{9}, 14)
	send, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	if err != nil {
		t.Fatal(err)
	}
	recv, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAes128CmHmacSha1_80, srtp.SRTPReplayProtection(64))
	if err != nil {
		t.Fatal(err)
	}
	l := b.fast.Load()
	e.fast.mu.Lock() // keeps the mux's read loop out
	l.remote, l.tagLen, l.verified, l.proven, l.failures = recv, 10, verified, verified, 0
	// No packet of the test's address goes pion's way (pion knows no
	// such pair): the engines of these tests run on a fake clock.
	l.lastPass = e.clock.Now()
	e.fast.mu.Unlock()
	e.fast.add(l, atk.LocalAddr().(*net.UDPAddr).AddrPort())
	return atk, send
}

func sealed(t *testing.T, c *srtp.Context, pt uint8, seq uint16, ssrc uint32, body []byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc}, Payload: body}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.EncryptRTP(nil, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFastPathHostile sends what an attacker would to the shared ICE
// port from the browser's address (a socket of the test that the leg is
// moved to) and from another: replays, forged and truncated packets,
// malformed headers, formats of no audio stream. Each is dropped and
// counted, never relayed, and the leg goes on relaying genuine packets.
func TestFastPathHostile(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{Clock: newFake()})
	b, _, phone := fastCall(t, e, true)
	atk, enc := attackLeg(t, e, b, true)
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stranger.Close() }()
	ice := e.ICEAddr()
	send := func(c *net.UDPConn, b []byte) {
		t.Helper()
		if _, err := c.WriteToUDPAddrPort(b, ice); err != nil {
			t.Fatal(err)
		}
	}
	relayed := func(body []byte) {
		t.Helper()
		if p := phone.recv(); !bytes.Equal(p.Payload, body) {
			t.Fatalf("phone got %x, want %x", p.Payload[:4], body[:4])
		}
	}
	nothing := func(what string) {
		t.Helper()
		if p := phone.Recv(100 * time.Millisecond); p != nil {
			t.Fatalf("%s reached the phone: seq %d payload %x", what, p.SequenceNumber, p.Payload[:4])
		}
	}
	const ssrc = 0x5eed
	good := sealed(t, enc, 0, 1, ssrc, payload(1, 160))
	send(atk, good)
	relayed(payload(1, 160))
	base := e.Stats().FastPath.Rejected

	// hostileSet makes the attacker's packets; seq numbers the sealed
	// ones above the window of what was relayed.
	hostileSet := func(seq uint16) map[string][]byte {
		tampered := sealed(t, enc, 0, seq, ssrc, payload(2, 160))
		tampered[20] ^= 1
		forged := bytes.Clone(good)
		forged[8] ^= 0xff
		return map[string][]byte{
			"replay":       good,
			"tampered":     tampered,
			"forged ssrc":  forged,
			"no tag":       sealed(t, enc, 0, seq+1, ssrc, payload(3, 160))[:12+160],
			"one byte":     {0x80},
			"short header": {0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0},
			"csrc count":   {0x8f, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0x5e, 0xed, 1, 2, 3, 4},
			"extension":    {0x90, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0x5e, 0xed, 0xbe, 0xde, 0xff, 0xff, 1, 2},
			"padding":      {0xa0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0x5e, 0xed, 0xff},
		}
	}
	hostile := hostileSet(2)
	for what, p := range hostile {
		send(atk, p)
		nothing(what)
	}
	waitFor(t, "every hostile packet counted", func() bool { return e.Stats().FastPath.Rejected-base == uint64(len(hostile)) })

	// From another address, a genuine packet is not the leg's: pion's
	// mux drops it.
	send(stranger, sealed(t, enc, 0, 7, ssrc, payload(7, 160)))
	nothing("a packet from a stranger")
	// A format of no audio stream goes to pion, which knows no such
	// stream.
	send(atk, sealed(t, enc, 96, 8, ssrc, payload(8, 160)))
	nothing("payload type 96")

	// The leg goes on.
	send(atk, sealed(t, enc, 0, 9, ssrc, payload(9, 160)))
	relayed(payload(9, 160))
	if st := e.Stats().FastPath; st.Rejected-base != uint64(len(hostile)) || st.Fallbacks != 0 || st.Legs != 1 {
		t.Fatalf("fast path stats %+v", st)
	}

	// Relaying costs no allocation; refusing none either, but for what
	// pion's srtp does itself.
	var genuine [][]byte
	for i := range allocTrials * 51 {
		genuine = append(genuine, sealed(t, enc, 0, uint16(100+i), ssrc, payload(byte(i), 160)))
	}
	l := b.fast.Load()
	e.fast.mu.Lock()
	defer e.fast.mu.Unlock()
	relayedBefore, sent := e.fast.packetsIn.Load(), len(genuine)
	if allocs := leastAllocs(50, func() {
		if !l.receive(genuine[0], e.clock.Now()) {
			t.Fatal("a genuine packet went to pion")
		}
		genuine = genuine[1:]
	}); allocs != 0 {
		t.Errorf("%.1f allocations per relayed packet", allocs)
	}
	if n, want := e.fast.packetsIn.Load()-relayedBefore, uint64(sent-len(genuine)); n != want {
		t.Errorf("%d genuine packets relayed, want %d", n, want)
	}
	for what, p := range hostileSet(1000) {
		buf := make([]byte, len(p))
		allocs := leastAllocs(50, func() {
			copy(buf, p) // decryption is in place
			l.receive(buf, e.clock.Now())
		})
		limit := 0.0
		switch what {
		case "replay":
			limit = 1 // pion's error value
		case "forged ssrc":
			// pion makes the state of an SSRC it has not seen before
			// checking the tag (kept only when the tag holds).
			limit = 4
		}
		if allocs > limit {
			t.Errorf("%s: %.1f allocations per packet", what, allocs)
		}
	}
}

// TestFastPathWrongKeys: keys that authenticate no packet of the browser
// put the leg back on pion's path after fastAuthTries packets, counted
// once, and the call goes on through pion.
func TestFastPathWrongKeys(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{Clock: newFake()})
	b, br, phone := fastCall(t, e, true)
	atk, _ := attackLeg(t, e, b, false)
	other, err := srtp.CreateContext(bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 14), srtp.ProtectionProfileAes128CmHmacSha1_80)
	if err != nil {
		t.Fatal(err)
	}
	for i := range fastAuthTries {
		if _, err := atk.WriteToUDPAddrPort(sealed(t, other, 0, uint16(i), 1, payload(byte(i), 160)), e.ICEAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the leg back on pion's path", func() bool {
		st := e.Stats().FastPath
		return st.Fallbacks == 1 && st.Legs == 0 && b.fast.Load() == nil
	})
	if p := phone.Recv(100 * time.Millisecond); p != nil {
		t.Fatalf("a packet under wrong keys reached the phone: %d", p.SequenceNumber)
	}
	br.send(0, 9000, 9000*160, payload(0x33, 160))
	if p := phone.recv(); !bytes.Equal(p.Payload, payload(0x33, 160)) {
		t.Fatalf("phone got %x through pion", p.Payload[:4])
	}
}

// TestFastPathTrialLeavesPacket: a packet that fails to decrypt before the
// leg is verified goes to pion as it came, for pion's keys to try: a
// failed AES-GCM open clears what it was to decrypt, so the trial must not
// be made in place.
func TestFastPathTrialLeavesPacket(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{Clock: newFake()})
	b, _, _ := fastCall(t, e, true)
	l := b.fast.Load()
	ours, err := srtp.CreateContext(bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 12), srtp.ProtectionProfileAeadAes256Gcm, srtp.SRTPReplayProtection(64))
	if err != nil {
		t.Fatal(err)
	}
	other, err := srtp.CreateContext(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 12), srtp.ProtectionProfileAeadAes256Gcm)
	if err != nil {
		t.Fatal(err)
	}
	e.fast.mu.Lock() // keeps the mux's read loop out
	defer e.fast.mu.Unlock()
	l.remote, l.tagLen, l.verified, l.proven, l.failures = ours, 16, false, false, 0
	pkt := sealed(t, other, 0, 100, 1, payload(1, 160))
	was := bytes.Clone(pkt)
	if l.receive(pkt, e.clock.Now()) {
		t.Fatal("the fast path took a packet its keys do not open")
	}
	if !bytes.Equal(pkt, was) {
		t.Fatal("the packet given to pion is not the one that came")
	}
}

// TestFastPathFollowsLatestPair: pion's reports of a new selected pair
// are handled on goroutines of their own, in any order. Whatever ran
// before (here: the leg taken off the fast path, as a stale report of an
// ICE-TCP pair would), a report handled last leaves the leg on the pair
// that pion has selected now.
func TestFastPathFollowsLatestPair(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b, br, phone := fastCall(t, e, true)
	l := b.fast.Load()
	want := *l.addr.Load()
	e.fast.remove(l)
	b.moveFast(b.pc)
	if got := l.addr.Load(); got == nil || *got != want {
		t.Fatalf("the leg is on the fast path at %v, want %v (pion's pair)", got, want)
	}
	in := e.Stats().FastPath.PacketsIn
	br.send(0, 7000, 7000*160, payload(0x21, 160))
	if p := phone.recv(); !bytes.Equal(p.Payload, payload(0x21, 160)) {
		t.Fatalf("phone got %x", p.Payload[:4])
	}
	if n := e.Stats().FastPath.PacketsIn - in; n != 1 {
		t.Fatalf("%d packets on the fast path, want 1", n)
	}
}

// bridgeFrom makes an engine and a bridge with a browser and a phone, the
// bridge's stream to the browser starting after sequence number last.
func bridgeFrom(t *testing.T, last uint16) (*Engine, *Bridge, *testBrowser, *testPhone) {
	t.Helper()
	e := newTestEngine(t, Options{})
	b, br, phone := newTestBridge(t, e), newTestBrowser(t), newTestPhone(t)
	b.toWeb.lastSeq = last
	return e, b, br, phone
}

// TestFastPathTakesOverAfterWrap: the stream to the browser wraps its
// sequence numbers on pion's path, then the fast path takes it over; the
// fast path must encrypt with the rollover counter pion's path reached,
// or the browser authenticates nothing.
func TestFastPathTakesOverAfterWrap(t *testing.T) {
	checkGoroutines(t)
	e, b, br, phone := bridgeFrom(t, 65300) // where the stream starts: it wraps soon
	connectCall(t, b, br, phone, true)
	waitFastLeg(t, b)
	l := b.fast.Load()
	addr := *l.addr.Load()
	e.fast.remove(l) // pion's path, for now
	prime(t, b, br, phone, 0)

	gw := b.RTPAddr()
	send := func(i int) {
		phone.SendPacket(gw, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: uint16(200 + i), Timestamp: uint32(160 * i), SSRC: 0x4242}, Payload: payload(byte(i), 160)})
	}
	recv := func(i int) *rtp.Packet {
		t.Helper()
		p := br.recv()
		if !bytes.Equal(p.Payload, payload(byte(i), 160)) {
			t.Fatalf("browser got %x, want packet %d", p.Payload[:4], i)
		}
		return p
	}
	i := 0
	for wrapped := false; !wrapped; i++ {
		if i > 300 {
			t.Fatal("the stream did not wrap")
		}
		send(i)
		wrapped = recv(i).SequenceNumber < 100
	}
	out := e.Stats().FastPath.PacketsOut
	e.fast.add(l, addr)
	for j := range 10 {
		send(i + j)
		recv(i + j)
	}
	if n := e.Stats().FastPath.PacketsOut - out; n != 10 {
		t.Fatalf("%d packets on the fast path after the take-over, want 10", n)
	}
}

// toBrowser sends n packets of the phone's stream ssrc, from sequence
// number *seq on, and checks that the browser gets each once, in any
// order (one through pion can come after the next on the fast path). It
// returns how many went on the fast path. Bursts of 100 at most: more
// fill the browser's socket.
func toBrowser(t *testing.T, e *Engine, b *Bridge, br *testBrowser, phone *testPhone, ssrc uint32, seq *uint16, n int) uint64 {
	t.Helper()
	out := e.Stats().FastPath.PacketsOut
	gw := b.RTPAddr()
	for n > 0 {
		burst, first := min(n, 100), *seq
		for range burst {
			phone.SendPacket(gw, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: *seq, Timestamp: uint32(*seq) * 160, SSRC: ssrc}, Payload: payload(byte(*seq), 160)})
			*seq++
		}
		got := map[byte]bool{}
		for range burst {
			p := br.recv()
			if len(p.Payload) != 160 || !bytes.Equal(p.Payload, payload(p.Payload[0], 160)) || got[p.Payload[0]] || int(p.Payload[0]-byte(first)) >= burst {
				t.Fatalf("browser got %x among packets %d to %d", p.Payload[:min(4, len(p.Payload))], first, *seq-1)
			}
			got[p.Payload[0]] = true
		}
		n -= burst
	}
	return e.Stats().FastPath.PacketsOut - out
}

// TestFastPathRejoins: a leg that was off the fast path (its pair on
// ICE-TCP for a while, say) comes back to it. After a short time off, the
// browser's audio is decrypted on the fast path again. After more than
// 2^15 packets, the remote context cannot guess their rollover counter
// (RFC 3711 §3.3.1 guesses within 2^15 of the last packet it saw): the
// browser's audio must still reach the phone, through pion from then on,
// and the phone's audio stays on the fast path.
func TestFastPathRejoins(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b, br, phone := fastCall(t, e, true)
	l := b.fast.Load()
	addr := *l.addr.Load()
	// From above 2^15: the fast path's last packet is past the middle,
	// and the stream wraps while the leg is off it.
	seq := uint16(60000)
	send := func(n int) {
		for range n {
			br.send(0, seq, uint32(seq)*160, payload(byte(seq), 160))
			seq++
		}
	}
	phone.Watch()
	heard := func(n int64, what string) {
		t.Helper()
		waitFor(t, what, func() bool { return phone.Audio() >= n })
	}
	away := func(packets int) {
		t.Helper()
		e.fast.remove(l)
		in := e.Stats().FastPath.PacketsIn
		for sent := 0; sent < packets; sent += 100 {
			// Paced: a burst of more fills the phone's socket (its
			// default buffer holds some 250 datagrams).
			n := phone.Audio()
			send(100)
			heard(n+100, "the phone hears pion's path")
		}
		if n := e.Stats().FastPath.PacketsIn; n != in {
			t.Fatalf("%d packets on the fast path while the leg was off it", n-in)
		}
		e.fast.add(l, addr)
	}

	away(100)
	in, n := e.Stats().FastPath.PacketsIn, phone.Audio()
	send(1)
	heard(n+1, "the browser's audio after a short time off")
	if st := e.Stats().FastPath; st.PacketsIn != in+1 || st.Fallbacks != 0 {
		t.Fatalf("after a short time off: fast path stats %+v, want the packet on it (%d before)", st, in)
	}

	away(33000)
	in, n = e.Stats().FastPath.PacketsIn, phone.Audio()
	send(20)
	heard(n+20, "the browser's audio after a long time off")
	if st := e.Stats().FastPath; st.PacketsIn != in || st.Fallbacks != 1 || st.Rejected != 0 {
		t.Fatalf("after a long time off: fast path stats %+v, want the browser's packets through pion, one fallback (%d in before)", st, in)
	}
	var phoneSeq uint16
	if n := toBrowser(t, e, b, br, phone, 0x2222, &phoneSeq, 1); n != 1 || e.Stats().FastPath.Legs != 1 {
		t.Fatalf("the phone's audio after the fallback: %d packets on the fast path, fast path stats %+v", n, e.Stats().FastPath)
	}
}

// TestAudioBeforeConnectWraps: the phone's audio that comes before the
// browser's leg is connected goes nowhere, and its sequence numbers wrap.
// The browser's SRTP counts wraps from the first packet it gets (RFC 3711
// §3.3.1): the packets that went nowhere must not move the rollover
// counter the fast path encrypts with, or the browser can decrypt nothing.
func TestAudioBeforeConnectWraps(t *testing.T) {
	checkGoroutines(t)
	e, b, br, phone := bridgeFrom(t, 65530) // the stream wraps in its sixth packet
	if _, err := b.WebOffer(br.Offer()); err != nil {
		t.Fatal(err)
	}
	ans, err := b.RTPAnswer(phone.SDP(1, "0 101"))
	if err != nil {
		t.Fatal(err)
	}
	// The browser does not have the answer yet: its leg cannot connect.
	gw := b.RTPAddr()
	const early = 20
	for i := range early {
		phone.SendPacket(gw, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: uint16(100 + i), Timestamp: uint32(160 * i), SSRC: 0x5151}, Payload: payload(byte(i), 160)})
	}
	waitFor(t, "the early audio dropped", func() bool { return b.Stats().RTP.Dropped.Direction >= early })
	b.toWeb.mu.Lock()
	last := b.toWeb.lastSeq
	b.toWeb.mu.Unlock()
	if last >= 65530 {
		t.Fatalf("the stream is at %d: it did not wrap", last)
	}
	br.SetAnswer(ans)
	br.WaitConnected()
	waitFastLeg(t, b)
	prime(t, b, br, phone, 0) // its first packet to the browser goes through pion
	var seq uint16
	if n := toBrowser(t, e, b, br, phone, 0x2222, &seq, 5); n != 5 || e.Stats().FastPath.Fallbacks != 0 {
		t.Fatalf("%d of 5 packets on the fast path, fast path stats %+v", n, e.Stats().FastPath)
	}
}

// TestFastPathHandsOver: the stream to the browser runs on the fast path
// across a wrap and for more than 2^15 packets, then the leg leaves the
// fast path (its pair on ICE-TCP, say). pion's SRTP context, which
// encrypted only one packet in pionSyncEvery of them, must take the next
// ones for the indexes the browser expects: it guesses their rollover
// counter within 2^15 of the last packet it saw.
func TestFastPathHandsOver(t *testing.T) {
	checkGoroutines(t)
	e, b, br, phone := bridgeFrom(t, 60000) // the stream wraps on the fast path
	connectCall(t, b, br, phone, true)
	waitFastLeg(t, b)
	prime(t, b, br, phone, 0)
	var seq uint16
	if n := toBrowser(t, e, b, br, phone, 0x3333, &seq, 33000); n < 33000-33000/pionSyncEvery-1 || n == 33000 {
		t.Fatalf("%d of 33,000 packets on the fast path, want all but one in %d", n, pionSyncEvery)
	}
	e.fast.remove(b.fast.Load())
	if n := toBrowser(t, e, b, br, phone, 0x3333, &seq, 100); n != 0 {
		t.Fatalf("%d packets on the fast path after the leg left it", n)
	}
}

func TestROCCount(t *testing.T) {
	var c rocCount
	seqs := []uint16{65534, 65535, 0, 65535, 1, 30000, 60000, 65000, 2, 65001, 3}
	want := []uint32{0, 0, 1, 0, 1, 1, 1, 1, 2, 1, 2}
	// Wraps at 65535→0 and 65000→2; 65535 and 65001 come late, from
	// before a wrap.
	for i, s := range seqs {
		if got := c.count(s); got != want[i] {
			t.Fatalf("packet %d (seq %d): roc %d, want %d", i, s, got, want[i])
		}
	}
}

// clientHello is a DTLS datagram with a ClientHello of random r.
func clientHello(t *testing.T, r byte) []byte {
	t.Helper()
	m := &handshake.MessageClientHello{
		Version:            protocol.Version1_2,
		CipherSuiteIDs:     []uint16{uint16(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)},
		CompressionMethods: []*protocol.CompressionMethod{{}},
	}
	m.Random.RandomBytes[0] = r
	h := handshake.Handshake{Message: m}
	body, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(body) >> 8), byte(len(body))}
	return append(rec, body...)
}

// TestKeyTableCaps floods the tables of handshakes in progress as an
// attacker would, with ClientHellos from many addresses and key log lines:
// they stop at maxHandshakes, take new entries again once the old ones
// expire, and ignore what is not a key log line.
func TestKeyTableCaps(t *testing.T) {
	now := t0
	k := newKeyTable(func() time.Time { return now })
	for i := range maxHandshakes + 10 {
		k.observe(clientHello(t, byte(i)), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5000), false)
	}
	line := func(i int) []byte {
		return []byte(fmt.Sprintf("CLIENT_RANDOM %064x %096x\n", i, i+1))
	}
	for i := range maxHandshakes + 10 {
		if _, err := k.Write(line(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"", "CLIENT_RANDOM", "CLIENT_RANDOM zz 00", "SERVER_HANDSHAKE_TRAFFIC_SECRET " + strings.Repeat("0", 64) + " " + strings.Repeat("0", 96),
		"CLIENT_RANDOM " + strings.Repeat("g", 64) + " " + strings.Repeat("0", 96)} {
		if n, err := k.Write([]byte(bad)); err != nil || n != len(bad) {
			t.Fatalf("Write(%q) = %d, %v", bad, n, err)
		}
	}
	k.mu.Lock()
	hellos, secrets := len(k.hellos), len(k.secrets)
	k.mu.Unlock()
	if hellos != maxHandshakes || secrets != maxHandshakes {
		t.Fatalf("%d hellos, %d secrets kept, want the cap %d", hellos, secrets, maxHandshakes)
	}
	// A handshake from an address that did not get in has no keys.
	late := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, maxHandshakes >> 8, maxHandshakes & 0xff}), 5000)
	if _, err := k.take(late); !errors.Is(err, errNoKeys) {
		t.Fatalf("take of a refused handshake: %v", err)
	}
	now = now.Add(handshakeTTL + time.Second)
	k.observe(clientHello(t, 1), late, false)
	_, _ = k.Write(line(maxHandshakes + 20))
	k.mu.Lock()
	hellos, secrets = len(k.hellos), len(k.secrets)
	k.mu.Unlock()
	if hellos != 1 || secrets != 1 {
		t.Fatalf("after the TTL: %d hellos, %d secrets, want the new one alone", hellos, secrets)
	}
}

// allocTrials is how many times leastAllocs measures.
const allocTrials = 5

// leastAllocs is testing.AllocsPerRun(runs, f) at its least over
// allocTrials trials. AllocsPerRun counts the whole process's
// allocations, and the pion peers of these tests allocate in their own
// goroutines now and then (ICE checks, RTCP): what f allocates shows in
// every trial, their noise only in some.
func leastAllocs(runs int, f func()) float64 {
	least := testing.AllocsPerRun(runs, f)
	for i := 1; i < allocTrials && least > 0; i++ {
		least = min(least, testing.AllocsPerRun(runs, f))
	}
	return least
}

// TestClientHelloFragments: a ClientHello too big for one datagram
// (Chromium's, with its post-quantum key share) comes in fragments; the
// first holds the random the keys need, and the gateway as DTLS server
// takes it from there. A first fragment too short to hold it, or not
// DTLS, is ignored.
func TestClientHelloFragments(t *testing.T) {
	// first returns the first cut bytes of the ClientHello of random r
	// as a fragment of it, in a record of its own.
	first := func(r byte, cut int, version byte) []byte {
		full := clientHello(t, r)
		hs := append([]byte(nil), full[13:]...) // the handshake message
		body := hs[handshake.HeaderLength:]
		body[0] = version
		frag := append(hs[:handshake.HeaderLength:handshake.HeaderLength], body[:cut]...)
		frag[9], frag[10], frag[11] = byte(cut>>16), byte(cut>>8), byte(cut) // fragment_length
		rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(frag) >> 8), byte(len(frag))}
		return append(rec, frag...)
	}
	for _, c := range []struct {
		name    string
		cut     int
		version byte
		want    bool
	}{
		{"first fragment", 40, 0xfe, true},
		{"random cut short", clientHelloRandomEnd - 1, 0xfe, false},
		{"not DTLS", 40, 0x03, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := newKeyTable(func() time.Time { return t0 })
			peer := netip.MustParseAddrPort("192.0.2.1:5000")
			k.observe(first(7, c.cut, c.version), peer, false)
			k.mu.Lock()
			e := k.hellos[peer]
			k.mu.Unlock()
			// The random's first four bytes are the time (pion's
			// Random); RandomBytes follow.
			got := e != nil && e.haveClient && e.client[4] == 7 && !e.gatewayClient
			if got != c.want {
				t.Errorf("hello %+v: took the random %v, want %v", e, got, c.want)
			}
		})
	}
}
