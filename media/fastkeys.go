package media

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/srtp/v3"
)

// The fast path needs the SRTP keys of each web leg, which pion derives
// from DTLS and keeps to itself. It learns them with pion's own parts:
// the key log of the DTLS handshake (SettingEngine.SetDTLSKeyLogWriter,
// an in-process writer: the master secret by client random), and the
// hellos that pass in the clear through the shared socket (both randoms,
// the cipher suite, the use_srtp profile). From those, RFC 5764's
// exporter (pion's PRF) gives what pion's srtp.Config takes.

// Bounds of the tables of handshakes in progress. Entries are made for
// hellos and key log lines; an attacker who sends hellos from many
// addresses can only evict entries, which puts calls on pion's path, never
// grow the tables. Entries are dropped when a leg takes its keys, or after
// handshakeTTL.
const (
	maxHandshakes = 4096
	handshakeTTL  = time.Minute
	randomLen     = handshake.RandomLength
	masterLen     = 48
)

var errNoKeys = errors.New("media: fast path: no srtp keys for the leg")

// hello is what the hellos of one handshake told, by the peer's address.
type hello struct {
	at            time.Time
	client        [randomLen]byte
	server        [randomLen]byte
	haveClient    bool
	haveServer    bool
	gatewayClient bool // the gateway sent the ClientHello
	suite         uint16
	profile       extension.SRTPProtectionProfile
}

// keyTable keeps the handshakes in progress and the key log's secrets until
// a leg takes its keys. Safe for concurrent use.
type keyTable struct {
	now func() time.Time

	mu      sync.Mutex
	hellos  map[netip.AddrPort]*hello
	secrets map[[randomLen]byte]secret
}

type secret struct {
	at     time.Time
	master [masterLen]byte
}

func newKeyTable(now func() time.Time) *keyTable {
	return &keyTable{now: now, hellos: map[netip.AddrPort]*hello{}, secrets: map[[randomLen]byte]secret{}}
}

// Write takes one line of pion's DTLS key log (NSS format: "CLIENT_RANDOM
// <client random> <master secret>", one line per Write). It never fails:
// a line it does not understand is ignored.
func (k *keyTable) Write(p []byte) (int, error) {
	// Parsed in place: no copy of the secret is made but the one kept.
	f := bytes.Fields(p)
	if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" || len(f[1]) != 2*randomLen || len(f[2]) != 2*masterLen {
		return len(p), nil
	}
	var cr [randomLen]byte
	var s secret
	if _, err := hex.Decode(cr[:], f[1]); err != nil {
		return len(p), nil
	}
	if _, err := hex.Decode(s.master[:], f[2]); err != nil {
		clear(s.master[:])
		return len(p), nil
	}
	s.at = k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.secrets) >= maxHandshakes {
		k.expireLocked(s.at)
	}
	if len(k.secrets) < maxHandshakes {
		k.secrets[cr] = s
	}
	clear(s.master[:])
	return len(p), nil
}

// expireLocked drops entries older than handshakeTTL; k.mu is held.
func (k *keyTable) expireLocked(now time.Time) {
	for a, h := range k.hellos {
		if now.Sub(h.at) > handshakeTTL {
			delete(k.hellos, a)
		}
	}
	for r, s := range k.secrets {
		if now.Sub(s.at) > handshakeTTL {
			clear(s.master[:])
			delete(k.secrets, r)
		}
	}
}

// clientHelloRandomEnd is where a ClientHello's random ends in its body:
// after the two bytes of the version (RFC 6347 §4.2.1).
const clientHelloRandomEnd = 2 + handshake.RandomLength

// clientHello records the random of a ClientHello to or from peer.
func (k *keyTable) clientHello(random [handshake.RandomLength]byte, peer netip.AddrPort, sent bool) {
	k.update(peer, func(e *hello) {
		if !e.haveClient || e.client != random {
			// A new handshake from this address: what the last one's
			// ServerHello said is not this one's.
			e.haveServer = false
		}
		e.client, e.haveClient, e.gatewayClient = random, true, sent
	})
}

// observe looks for a ClientHello or ServerHello in a DTLS datagram to or
// from peer; sent tells the direction (the gateway sent it).
func (k *keyTable) observe(b []byte, peer netip.AddrPort, sent bool) {
	for len(b) >= 13 {
		// DTLS 1.2 record header (RFC 6347 §4.1): type, version, epoch,
		// sequence number, length.
		typ, epoch, n := b[0], binary.BigEndian.Uint16(b[3:]), int(binary.BigEndian.Uint16(b[11:]))
		if len(b) < 13+n {
			return
		}
		if typ == 22 && epoch == 0 {
			k.observeHandshake(b[13:13+n], peer, sent)
		}
		b = b[13+n:]
	}
}

func (k *keyTable) observeHandshake(b []byte, peer netip.AddrPort, sent bool) {
	var h handshake.Header
	if err := h.Unmarshal(b); err != nil {
		return
	}
	if h.Type == handshake.TypeClientHello && h.FragmentOffset == 0 && h.FragmentLength < h.Length {
		// Chromium's ClientHello (1,413 bytes, with its post-quantum
		// key share) comes in two fragments (RFC 6347 §4.2.3), and a
		// gateway that offered (a phone calling a browser) is the DTLS
		// server: without this, such calls never took the fast path.
		// The first fragment starts with the version and the random,
		// which is all the keys need.
		frag := b[handshake.HeaderLength:]
		if int(h.FragmentLength) < clientHelloRandomEnd || len(frag) < clientHelloRandomEnd || frag[0] != 0xfe {
			return
		}
		var random [handshake.RandomLength]byte
		copy(random[:], frag[2:clientHelloRandomEnd])
		k.clientHello(random, peer, sent)
		return
	}
	if h.FragmentOffset != 0 || h.FragmentLength != h.Length || len(b) < handshake.HeaderLength+int(h.Length) {
		return
	}
	body := b[handshake.HeaderLength : handshake.HeaderLength+int(h.Length)]
	switch h.Type {
	case handshake.TypeClientHello:
		var m handshake.MessageClientHello
		if m.Unmarshal(body) != nil {
			return
		}
		k.clientHello(m.Random.MarshalFixed(), peer, sent)
	case handshake.TypeServerHello:
		var m handshake.MessageServerHello
		if m.Unmarshal(body) != nil || m.CipherSuiteID == nil {
			return
		}
		var profile extension.SRTPProtectionProfile
		for _, x := range m.Extensions {
			if u, ok := x.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
				profile = u.ProtectionProfiles[0]
			}
		}
		if profile == 0 {
			return
		}
		k.update(peer, func(e *hello) {
			e.server, e.haveServer = m.Random.MarshalFixed(), true
			e.suite, e.profile = *m.CipherSuiteID, profile
		})
	}
}

func (k *keyTable) update(peer netip.AddrPort, f func(*hello)) {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.hellos[peer]
	if e == nil {
		if len(k.hellos) >= maxHandshakes {
			k.expireLocked(now)
		}
		if len(k.hellos) >= maxHandshakes {
			return
		}
		e = &hello{}
		k.hellos[peer] = e
	}
	e.at = now
	f(e)
}

// srtpKeys are the SRTP keys of one web leg, from the gateway's side.
type srtpKeys struct {
	profile srtp.ProtectionProfile
	cfg     srtp.Config
}

// take returns the keys of the DTLS session run with peer, and forgets
// what it held about it.
func (k *keyTable) take(peer netip.AddrPort) (*srtpKeys, error) {
	k.mu.Lock()
	e := k.hellos[peer]
	if e == nil || !e.haveClient || !e.haveServer {
		k.mu.Unlock()
		return nil, fmt.Errorf("%w: no handshake seen with %s", errNoKeys, peer)
	}
	s, ok := k.secrets[e.client]
	delete(k.hellos, peer)
	delete(k.secrets, e.client)
	h := *e
	k.mu.Unlock()
	defer clear(s.master[:])
	if !ok {
		return nil, fmt.Errorf("%w: no key log line for the handshake with %s", errNoKeys, peer)
	}
	profile, ok := srtpProfile(h.profile)
	if !ok {
		return nil, fmt.Errorf("%w: srtp profile %#04x", errNoKeys, uint16(h.profile))
	}
	x := &exporter{master: s.master[:], client: h.client, server: h.server, hash: prfHash(h.suite)}
	keys := &srtpKeys{profile: profile, cfg: srtp.Config{Profile: profile}}
	err := keys.cfg.ExtractSessionKeysFromDTLS(x, h.gatewayClient)
	if err != nil {
		return nil, fmt.Errorf("media: fast path: srtp keys: %w", err)
	}
	return keys, nil
}

// tagLen is the length of the profile's authentication tag in SRTP.
func (s *srtpKeys) tagLen() int {
	a, _ := s.profile.AuthTagRTPLen()
	g, _ := s.profile.AEADAuthTagLen()
	return a + g
}

// contexts makes the SRTP contexts of the keys, and zeroes the keys.
func (s *srtpKeys) contexts() (local, remote *srtp.Context, err error) {
	k := &s.cfg.Keys
	defer func() {
		clear(k.LocalMasterKey)
		clear(k.LocalMasterSalt)
		clear(k.RemoteMasterKey)
		clear(k.RemoteMasterSalt)
	}()
	local, err = srtp.CreateContext(k.LocalMasterKey, k.LocalMasterSalt, s.profile)
	if err != nil {
		return nil, nil, fmt.Errorf("media: fast path: srtp context: %w", err)
	}
	// pion's session default: a window of 64 packets.
	remote, err = srtp.CreateContext(k.RemoteMasterKey, k.RemoteMasterSalt, s.profile, srtp.SRTPReplayProtection(64))
	if err != nil {
		return nil, nil, fmt.Errorf("media: fast path: srtp context: %w", err)
	}
	return local, remote, nil
}

// srtpProfile maps DTLS's use_srtp profile onto pion/srtp's; both are the
// IANA numbers, but only those pion/srtp implements are taken.
func srtpProfile(p extension.SRTPProtectionProfile) (srtp.ProtectionProfile, bool) {
	switch p {
	case extension.SRTP_AES128_CM_HMAC_SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, true
	case extension.SRTP_AES128_CM_HMAC_SHA1_32:
		return srtp.ProtectionProfileAes128CmHmacSha1_32, true
	case extension.SRTP_AEAD_AES_128_GCM:
		return srtp.ProtectionProfileAeadAes128Gcm, true
	case extension.SRTP_AEAD_AES_256_GCM:
		return srtp.ProtectionProfileAeadAes256Gcm, true
	}
	return 0, false
}

// prfHash is the TLS 1.2 PRF hash of a cipher suite (RFC 5246 §5, RFC
// 5289 §3): SHA-384 for the suites named so, SHA-256 for the others.
func prfHash(suite uint16) prf.HashFunc {
	if strings.HasSuffix(dtls.CipherSuiteName(dtls.CipherSuiteID(suite)), "SHA384") {
		return sha512.New384
	}
	return func() hash.Hash { return sha256.New() }
}

// exporter is RFC 5705's exporter of one DTLS 1.2 session, for
// srtp.Config.ExtractSessionKeysFromDTLS.
type exporter struct {
	master         []byte
	client, server [randomLen]byte
	hash           prf.HashFunc
}

func (x *exporter) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if context != nil {
		return nil, errors.New("media: exporter context unsupported")
	}
	seed := bytes.Join([][]byte{[]byte(label), x.client[:], x.server[:]}, nil)
	return prf.PHash(x.master, seed, length, x.hash)
}
