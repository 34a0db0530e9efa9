package digest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/ascii"
)

// Defaults for zero fields of Server.
const (
	DefaultNonceTTL         = 5 * time.Minute
	DefaultMaxTrackedNonces = 100000
	// DefaultResendWindow is 64*T1 of RFC 3261 (Timers B and F): no
	// client sends a request again later than that after its first copy.
	DefaultResendWindow = 32 * time.Second
)

// Nonce layout: the head, issue time (8 bytes, Unix ns) || random (8),
// then its AES-CMAC (16), keyed for the realm and the algorithm (see
// init). 32 bytes encode to 43 base64url characters; the last one has two
// padding bits, which decoding requires to be zero (Strict), so no two
// encodings decode to the same nonce.
const (
	nonceRawLen = 8 + 8 + aes.BlockSize
	nonceLen    = 43
	macLabel    = "switchboard digest nonce v2"
)

var nonceEncoding = base64.RawURLEncoding.Strict()

// Server issues Digest challenges for one realm and verifies the answers.
// Set its fields before first use and do not change them afterwards; the
// zero value apart from Realm is ready to use. A Server must not be copied
// after first use. Its methods are safe for concurrent use.
type Server struct {
	// Realm is sent in challenges and required in credentials.
	Realm string
	// Secret keys the nonce HMAC. Servers that share it accept each
	// other's nonces (a cluster, or across restarts). If empty, a random
	// secret is made on first use, so nonces die with the process and
	// clients see ErrBadNonce once after a restart. Use 32 random bytes.
	Secret []byte
	// NonceTTL is how long a nonce is accepted; default DefaultNonceTTL.
	NonceTTL time.Duration
	// Now is the clock; default time.Now. Tests inject a fake.
	Now func() time.Time
	// MaxTrackedNonces caps the nonce-count table; default
	// DefaultMaxTrackedNonces.
	MaxTrackedNonces int
	// ResendWindow is how long after credentials were accepted a copy of
	// the same request sent again is accepted too (see VerifyResent);
	// default DefaultResendWindow.
	ResendWindow time.Duration

	once sync.Once
	key  []byte
	seed maphash.Seed // keys the requests' fingerprints: unknown outside, so none can be forged to collide
	// challengeHead is the start of every challenge, up to the nonce's
	// opening quote: `Digest realm="…", nonce="`.
	challengeHead string
	macs          [len(algorithms)]sync.Pool // of *macState, keyed for the realm and the algorithm

	mu sync.Mutex
	// seen maps the keyed hash of (nonce, user) to its entry's sequence
	// number in age. Integers, not the strings: no allocation per nonce,
	// cheaper hashing and deletes, and a map and ring without pointers,
	// which the collector does not scan (100,000 entries at the cap).
	// Two pairs with the same hash share an entry, which can only refuse
	// a good count (as a replay), never accept a reused one; with a
	// secret seed and 64 bits nobody can make that happen on purpose.
	seen map[uint64]uint64
	age  seenQueue
	// evictedUpTo is the newest issue time evicted from seen to make room.
	// An untracked nonce issued at or before it may have been used already,
	// so it is refused as stale: eviction never reopens a replay window.
	evictedUpTo int64
	evicted     bool
}

func (s *Server) init() {
	s.key = append([]byte(nil), s.Secret...)
	if len(s.key) == 0 {
		s.key = make([]byte, 32)
		rand.Read(s.key) // never fails since Go 1.24
	}
	// A nonce's MAC is AES-CMAC (NIST SP 800-38B, RFC 4493) of its head,
	// one block: one AES encryption. Its AES-256 key is HMAC-SHA256(key,
	// label || the realm's length || the realm || the algorithm's name),
	// made once here. Before (v1) it was HMAC-SHA256 over the head, label,
	// realm and name: three blocks of SHA-256 per MAC, two MACs per
	// registration. That was 2 % of the server's CPU on a host with SHA
	// extensions, and 14 % of a registration's instructions without them
	// (callgrind's CPU): x86-64 server CPUs have had AES instructions for
	// a decade, SHA ones only lately (Intel's from Ice Lake on).
	for i := range algorithms {
		b := append([]byte(macLabel), binary.BigEndian.AppendUint32(nil, uint32(len(s.Realm)))...)
		b = append(b, s.Realm...)
		b = append(b, algorithms[i].name...)
		kh := hmac.New(sha256.New, s.key)
		kh.Write(b)
		blk, k1 := newCMAC(kh.Sum(nil))
		s.macs[i].New = func() any { return &macState{blk: blk, k1: k1} }
	}
	var w writer
	w.start()
	w.quoted("realm", s.Realm)
	w.name("nonce")
	w.b.WriteByte('"')
	s.challengeHead = w.String()
	s.seen = make(map[uint64]uint64)
	s.seed = maphash.MakeSeed()
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) ttl() int64 {
	if s.NonceTTL > 0 {
		return int64(s.NonceTTL)
	}
	return int64(DefaultNonceTTL)
}

func (s *Server) resendWindow() int64 {
	if s.ResendWindow > 0 {
		return int64(s.ResendWindow)
	}
	return int64(DefaultResendWindow)
}

func (s *Server) maxTracked() int {
	if s.MaxTrackedNonces > 0 {
		return s.MaxTrackedNonces
	}
	return DefaultMaxTrackedNonces
}

// macState holds a nonce MAC's key and buffers: a cipher.Block takes
// what it is given to the heap, so the MAC is made in these, and a pooled
// macState makes a MAC allocate nothing.
type macState struct {
	blk     cipher.Block // AES, safe for concurrent use: shared by the pool
	k1      [aes.BlockSize]byte
	in, out [aes.BlockSize]byte
}

// newCMAC returns the AES block of key and CMAC's subkey K1, the one a
// message of whole blocks uses (RFC 4493 §2.3).
func newCMAC(key []byte) (cipher.Block, [aes.BlockSize]byte) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		panic("digest: " + err.Error()) // cannot happen: the key is 32 bytes
	}
	var l, k1 [aes.BlockSize]byte
	blk.Encrypt(l[:], l[:])
	for i := range l {
		k1[i] = l[i] << 1
		if i+1 < len(l) {
			k1[i] |= l[i+1] >> 7
		}
	}
	if l[0]&0x80 != 0 {
		k1[len(k1)-1] ^= 0x87
	}
	return blk, k1
}

// cmac is AES-CMAC of one whole block, in's: AES(in XOR K1).
func (m *macState) cmac() {
	subtle.XORBytes(m.in[:], m.in[:], m.k1[:])
	m.blk.Encrypt(m.out[:], m.in[:])
}

// mac appends the nonce MAC of head (time || random) to dst. The realm and
// algorithm are bound in by the key, so a nonce is only good where it was
// issued.
func (s *Server) mac(dst []byte, head *[16]byte, a *algorithm) []byte {
	pool := &s.macs[a.id]
	m := pool.Get().(*macState)
	m.in = *head
	m.cmac()
	dst = append(dst, m.out[:]...)
	pool.Put(m)
	return dst
}

// Challenge returns a fresh challenge for the algorithm ("MD5", "SHA-256",
// "SHA-512-256", optionally "-sess"; "" means MD5 without naming it) with
// qop="auth". Set stale after Verify returned ErrStale or ErrReplay. To offer
// several algorithms (RFC 8760), call it once per algorithm, strongest
// first, and send one header field per challenge. Issuing a challenge
// stores nothing. The only error is ErrUnsupportedAlgorithm.
func (s *Server) Challenge(algorithm string, stale bool) (Challenge, error) {
	a := lookupAlgorithm(algorithm)
	if a == nil {
		return Challenge{}, fmt.Errorf("%w %q", ErrUnsupportedAlgorithm, algorithm)
	}
	var nonce [nonceLen]byte
	s.newNonce(&nonce, a)
	name := a.name
	if algorithm == "" {
		name = ""
	}
	return Challenge{
		Realm:     s.Realm,
		Nonce:     string(nonce[:]),
		Algorithm: name,
		QOP:       []string{"auth"},
		Stale:     stale,
	}, nil
}

// ChallengeHeader returns the value of the header field of a fresh
// challenge, what Challenge(algorithm, stale) gives written with String,
// in one allocation, the string's, instead of three: a registrar sends one
// with every 401. The only error is ErrUnsupportedAlgorithm.
func (s *Server) ChallengeHeader(algorithm string, stale bool) (string, error) {
	a := lookupAlgorithm(algorithm)
	if a == nil {
		return "", fmt.Errorf("%w %q", ErrUnsupportedAlgorithm, algorithm)
	}
	var nonce [nonceLen]byte
	s.newNonce(&nonce, a) // runs init
	// What comes before the nonce is the same in every challenge: it was
	// written once, by init. (Writing the realm quoted, a byte at a time,
	// was most of the work.)
	const staleParam, algParam, qopParam = `, stale=true`, `, algorithm=`, `, qop="auth"`
	var b strings.Builder
	b.Grow(len(s.challengeHead) + nonceLen + len(staleParam) + len(algParam) + len(a.name) + len(qopParam))
	b.WriteString(s.challengeHead)
	b.Write(nonce[:])
	b.WriteByte('"')
	if stale {
		b.WriteString(staleParam)
	}
	if algorithm != "" {
		b.WriteString(algParam)
		b.WriteString(a.name)
	}
	b.WriteString(qopParam)
	return b.String(), nil
}

// newNonce writes a fresh nonce for a into dst.
func (s *Server) newNonce(dst *[nonceLen]byte, a *algorithm) {
	s.once.Do(s.init)
	var raw [nonceRawLen]byte
	var head [16]byte
	binary.BigEndian.PutUint64(head[:8], uint64(s.now().UnixNano()))
	rand.Read(head[8:16])
	copy(raw[:], head[:])
	s.mac(raw[:16], &head, a)
	nonceEncoding.Encode(dst[:], raw[:])
}

// checkNonce authenticates a nonce and returns its issue time (Unix ns).
func (s *Server) checkNonce(nonce string, a *algorithm) (int64, bool) {
	if len(nonce) != nonceLen {
		return 0, false
	}
	var src [nonceLen]byte
	copy(src[:], nonce)
	var raw [nonceRawLen]byte
	if n, err := nonceEncoding.Decode(raw[:], src[:]); err != nil || n != nonceRawLen {
		return 0, false
	}
	head := [16]byte(raw[:16])
	var want [aes.BlockSize]byte
	if !hmac.Equal(s.mac(want[:0], &head, a), raw[16:]) {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(raw[:8])), true
}

// zeros is a dummy HA1 for unknown users: the work done is the same, and the
// result is discarded.
const zeros = "0000000000000000000000000000000000000000000000000000000000000000"

// Verify checks credentials received in a request with the given method.
//
// lookupHA1 is called with the HA1 algorithm the credentials need ("MD5",
// "SHA-256" or "SHA-512-256": -sess variants share their base's HA1) and
// returns the stored [HA1] of the user named by c.Username in this realm.
// It is called only once the nonce has been authenticated, so forged
// requests cost no account lookup. If it reports false, or lookupHA1 is nil,
// Verify does the same work as for a wrong password and returns
// ErrBadResponse.
//
// Verify checks, in order: algorithm (ErrUnsupportedAlgorithm), realm
// (ErrBadResponse), qop=auth with cnonce and nc (ErrUnsupportedQOP,
// ErrMalformed), the nonce's HMAC (ErrBadNonce), the response, compared in
// constant time (ErrBadResponse), the nonce's age (ErrStale), and that nc
// is higher than any nc accepted before for this nonce and user
// (ErrReplay). Only credentials that pass every check are remembered.
// Answer ErrStale and ErrReplay with a challenge with stale=true, the rest
// with a fresh challenge.
//
// Verify does not check that c.URI names the request's Request-URI (RFC
// 2617 §3.2.2.5): that needs SIP URI equivalence, so the caller, who has the
// parsed URIs, must do it. Nor does it resolve hashed usernames: this server
// never offers userhash.
func (s *Server) Verify(c Credentials, method string, lookupHA1 func(algorithm string) (ha1 string, ok bool)) error {
	_, err := s.verify(c, method, nil, lookupHA1)
	return err
}

// VerifyResent is Verify for a request that its sender may send again
// unchanged, as SIP over UDP does until it hears an answer. request
// appends to its argument the request as received, byte for byte, with
// where it came from (for SIP: the source address and connection, then
// the message's text): a copy sent again is the same bytes from the same
// place, and anything else is another request. It is called only for
// credentials that are otherwise good, so a wrong or stale attempt costs
// no copy of its request.
//
// Credentials with the nonce count that was last accepted for their nonce
// and user are accepted again if they come with the same request, within
// ResendWindow of its first acceptance: that is a copy sent again, which
// a server that had lost track of the first copy (its transaction ended
// early under load, say) must not answer as a replay, or the caller's
// next copy finds the same answer and its call fails. The same count with
// any other request (another transaction, another Contact or body, from
// elsewhere), or later, is still ErrReplay: credentials cannot be reused
// for a new or altered request. Only a keyed 64-bit fingerprint of
// request is kept, under a key made at random for this Server, so none
// can be made to collide with it. resent reports a copy accepted again:
// its first copy was served, and the caller should answer as it did
// rather than do again what it asked.
func (s *Server) VerifyResent(c Credentials, method string, request func(b []byte) []byte, lookupHA1 func(algorithm string) (ha1 string, ok bool)) (resent bool, err error) {
	return s.verify(c, method, request, lookupHA1)
}

// VerifyUnknown is Verify for credentials naming a user that does not exist.
// It performs the same checks and hashing as Verify with a wrong password
// and returns the same error, so neither the error nor the time taken tells
// an attacker which user names exist. It never returns nil.
func (s *Server) VerifyUnknown(c Credentials, method string) error {
	_, err := s.verify(c, method, nil, nil)
	return err
}

func (s *Server) verify(c Credentials, method string, request func([]byte) []byte, lookupHA1 func(string) (string, bool)) (resent bool, err error) {
	s.once.Do(s.init)
	a := lookupAlgorithm(c.Algorithm)
	if a == nil {
		return false, fmt.Errorf("%w %q", ErrUnsupportedAlgorithm, c.Algorithm)
	}
	if c.Realm != s.Realm {
		return false, fmt.Errorf("%w: realm mismatch", ErrBadResponse)
	}
	// Without qop there is no nonce count, hence no replay protection;
	// the server always offers qop=auth, so any client can use it.
	switch {
	case c.QOP == "":
		return false, fmt.Errorf("%w: qop required", ErrUnsupportedQOP)
	case !ascii.EqualFold("auth", c.QOP):
		return false, fmt.Errorf("%w %q", ErrUnsupportedQOP, c.QOP)
	case c.CNonce == "":
		return false, malformed("missing cnonce")
	}
	nc, ok := parseNC(c.NC)
	if !ok {
		return false, malformed("bad nc")
	}
	issued, ok := s.checkNonce(c.Nonce, a)
	if !ok {
		return false, ErrBadNonce
	}

	ha1, known := "", false
	if lookupHA1 != nil {
		ha1, known = lookupHA1(a.base)
		ha1, known = normalizeHA1(ha1, known, a)
	}
	if !known {
		ha1 = zeros[:a.hexLen]
	}
	var buf [maxHex]byte
	want := a.appendResponse(buf[:0], ha1, c.Nonce, c.NC, c.CNonce, c.QOP, method, c.URI)
	match := equalHex(want, c.Response)
	if !known || !match {
		return false, ErrBadResponse
	}

	now := s.now().UnixNano()
	if now-issued > s.ttl() {
		return false, ErrStale
	}
	var fp uint64
	if request != nil {
		fp = s.fingerprint(method, request)
	}
	return s.track(c.Nonce, c.Username, issued, nc, fp, now)
}

// fingerprint is the keyed hash of a request's method and bytes (which
// request appends); never 0, which means none.
func (s *Server) fingerprint(method string, request func([]byte) []byte) uint64 {
	buf := requestBufs.Get().(*[]byte)
	*buf = request((*buf)[:0])
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(method)
	h.WriteByte(0)
	h.Write(*buf)
	if cap(*buf) <= 64<<10 { // a large message's buffer is not kept
		requestBufs.Put(buf)
	}
	return max(h.Sum64(), 1)
}

// requestBufs hold the bytes of requests being fingerprinted: an INVITE
// with its SDP is a kilobyte or two, once per call.
var requestBufs = sync.Pool{New: func() any { return new([]byte) }}

// equalHex reports whether got is the lowercase hex want, in either case
// (the RFC says lowercase; some clients disagree). The time it takes does
// not depend on want, the secret, beyond its length.
func equalHex(want []byte, got string) bool {
	if len(got) != len(want) {
		return false
	}
	var diff byte
	for i := 0; i < len(want); i++ {
		c := got[i]
		if 'A' <= c && c <= 'F' {
			c += 'a' - 'A' // got is the client's own, not secret
		}
		diff |= want[i] ^ c
	}
	return subtle.ConstantTimeByteEq(diff, 0) == 1
}

// normalizeHA1 validates a stored HA1 for a, lowercasing it.
func normalizeHA1(ha1 string, ok bool, a *algorithm) (string, bool) {
	if !ok || len(ha1) != a.hexLen || len(ha1)%8 != 0 {
		return "", false // every hexLen is a multiple of 8 (TestNormalizeHA1)
	}
	// Eight bytes at a time, without a
	// branch on the secret: a loop over bytes testing each range was 17
	// instructions a byte, the part of a registration's digest work that
	// the MD5 is not.
	var bad, upper uint64
	for i := 0; i+8 <= len(ha1); i += 8 {
		w := uint64(ha1[i]) | uint64(ha1[i+1])<<8 | uint64(ha1[i+2])<<16 | uint64(ha1[i+3])<<24 |
			uint64(ha1[i+4])<<32 | uint64(ha1[i+5])<<40 | uint64(ha1[i+6])<<48 | uint64(ha1[i+7])<<56
		hex := inRange(w, '0', '9') | inRange(w|0x2020202020202020, 'a', 'f')
		bad |= w | ^hex // any byte with its top bit set, from either
		upper |= inRange(w, 'A', 'F')
	}
	if bad&highBits != 0 {
		return "", false
	}
	// Stored HA1s are lowercase: ToLower's own scan of one for capitals
	// cost as much as this loop.
	if upper&highBits != 0 {
		ha1 = strings.ToLower(ha1)
	}
	return ha1, true
}

const highBits = 0x8080808080808080

// inRange sets the top bit of each byte of w that is within [lo, hi],
// for bytes below 0x80 (others give anything): x + 0x80 - lo has its top
// bit set when x >= lo, x + 0x7f - hi when x > hi, and neither sum
// carries into the next byte.
func inRange(w uint64, lo, hi byte) uint64 {
	const ones = 0x0101010101010101
	ge := w + ones*uint64(0x80-lo)
	gt := w + ones*uint64(0x7f-hi)
	return ge &^ gt & highBits
}

// parseNC parses an 8-hex-digit nonce count; zero is not a count.
func parseNC(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	var n uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint32(c)
	}
	return n, n != 0
}

// seenNonce is the highest nonce count accepted for a (nonce, user), and
// the fingerprint of the request it came with (0: none given) and when.
type seenNonce struct {
	key      uint64 // its key in seen
	issued   int64
	accepted int64
	request  uint64
	nc       uint32
}

// seenQueue holds the tracked nonces in the order of their first use, a
// ring: the head is the first to go, when it expires or to make room.
// Nonces are used soon after they are issued, so that is close to the
// order of their issue times; where it is not, an entry may outlive its
// nonce behind a younger head (Verify refuses the nonce as stale all the
// same), and evictedUpTo takes the newest issue time evicted, which keeps
// refusing whatever might have been evicted. It replaced a heap ordered by
// issue time, whose every eviction compared and moved entries along a
// path of 17 levels at the cap of 100,000, each a cache miss.
type seenQueue struct {
	buf     []seenNonce
	head, n int
	first   uint64 // sequence number of the head
}

// at returns the entry of sequence number seq, which must be queued.
func (q *seenQueue) at(seq uint64) *seenNonce {
	return &q.buf[(q.head+int(seq-q.first))%len(q.buf)]
}

// peek returns the head; the queue must not be empty.
func (q *seenQueue) peek() *seenNonce { return &q.buf[q.head] }

// push queues e and returns its sequence number.
func (q *seenQueue) push(e seenNonce) uint64 {
	if q.n == len(q.buf) {
		buf := make([]seenNonce, max(64, 2*len(q.buf)))
		for i := range q.n {
			buf[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = buf, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = e
	q.n++
	return q.first + uint64(q.n-1)
}

// pop removes the head and returns it.
func (q *seenQueue) pop() seenNonce {
	e := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.first++
	return e
}

// track accepts nc for the nonce and user if it is higher than any seen,
// or if it is the one seen and request, not 0, is the fingerprint of the
// request it was accepted with, within the resend window.
// Keying by user as well keeps one account from burning another's nonce.
func (s *Server) track(nonce, user string, issued int64, nc uint32, request uint64, now int64) (resent bool, err error) {
	k := s.seenKey(nonce, user)
	s.mu.Lock()
	defer s.mu.Unlock()
	ttl := s.ttl()
	for s.age.n > 0 && now-s.age.peek().issued > ttl {
		delete(s.seen, s.age.pop().key)
	}
	if seq, ok := s.seen[k]; ok {
		e := s.age.at(seq)
		if nc == e.nc && request != 0 && request == e.request && now-e.accepted <= s.resendWindow() {
			return true, nil // the same request sent again
		}
		if nc <= e.nc {
			return false, ErrReplay
		}
		e.nc, e.request, e.accepted = nc, request, now
		return false, nil
	}
	if s.evicted && issued <= s.evictedUpTo {
		return false, fmt.Errorf("%w: nonce count no longer tracked", ErrStale)
	}
	for s.age.n >= s.maxTracked() {
		e := s.age.pop()
		delete(s.seen, e.key)
		s.evictedUpTo, s.evicted = max(s.evictedUpTo, e.issued), true
	}
	s.seen[k] = s.age.push(seenNonce{key: k, issued: issued, accepted: now, request: request, nc: nc})
	return false, nil
}

// seenKey is the key of (nonce, user) in seen: a hash keyed with the
// Server's secret seed. A nonce has a fixed length, so nonce+user is
// unambiguous; it is put together on the stack.
func (s *Server) seenKey(nonce, user string) uint64 {
	if len(user) > maxInlineUser {
		var h maphash.Hash
		h.SetSeed(s.seed)
		h.WriteString(nonce)
		h.WriteString(user)
		return h.Sum64()
	}
	var kb [nonceLen + maxInlineUser]byte
	return maphash.Bytes(s.seed, append(append(kb[:0], nonce...), user...))
}

// maxInlineUser is the longest user name seenKey hashes from the stack.
const maxInlineUser = 64
