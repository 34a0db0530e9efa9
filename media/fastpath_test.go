package media

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
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
	fc := newFastConn(ours, testLogger(), keys)
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

// fastCall sets up a call between a test browser and a phone on e, the
// browser offering (gateway DTLS client) or answering (gateway DTLS
// server), and waits until its web leg is on the fast path.
func fastCall(t *testing.T, e *Engine, browserOffers bool) (*Bridge, *testBrowser, *testPhone) {
	t.Helper()
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	phone := newTestPhone(t)
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
	waitFor(t, "the leg on the fast path", func() bool { return b.fast.Load() != nil && b.fast.Load().addr.Load() != nil })
	prime(t, b, br, phone, 0)
	return b, br, phone
}

// TestFastPath runs calls with the gateway in each DTLS role: the audio
// goes both ways through the fast path, intact and in order, and pion's
// path sees none of it.
func TestFastPath(t *testing.T) {
	checkGoroutines(t)
	for _, browserOffers := range []bool{true, false} {
		name := "gateway-dtls-server"
		if browserOffers {
			name = "gateway-dtls-client"
		}
		t.Run(name, func(t *testing.T) {
			e := newTestEngine(t, Options{})
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
			if st.Legs != 1 || st.PacketsIn-before.PacketsIn != n || st.PacketsOut-before.PacketsOut != n || st.Fallbacks != 0 || st.Rejected != 0 {
				t.Fatalf("fast path stats %+v after %+v, want %d packets each way on it", st, before, n)
			}
			_ = b.Close()
			if st := e.Stats().FastPath; st.Legs != 0 {
				t.Fatalf("legs after close: %d", st.Legs)
			}
		})
	}
}

// TestNoFastPath: with the fast path off the call runs on pion's path.
func TestNoFastPath(t *testing.T) {
	e := newTestEngine(t, Options{NoFastPath: true})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	phone := newTestPhone(t)
	if _, err := b.WebOffer(br.Offer()); err != nil {
		t.Fatal(err)
	}
	ans, err := b.RTPAnswer(phone.SDP(1, "0 101"))
	if err != nil {
		t.Fatal(err)
	}
	br.SetAnswer(ans)
	br.WaitConnected()
	prime(t, b, br, phone, 0)
	if st := e.Stats().FastPath; st != (FastPathStats{}) {
		t.Fatalf("fast path stats %+v with the fast path off", st)
	}
}
