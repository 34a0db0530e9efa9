package digest

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"testing"
)

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestClientNonceCount(t *testing.T) {
	cl := &Client{Username: "alice", Password: "secret"}
	a := Challenge{Realm: "a", Nonce: "n1", QOP: []string{"auth"}}
	b := Challenge{Realm: "b", Nonce: "m1", QOP: []string{"auth"}}
	steps := []struct {
		ch     Challenge
		wantNC string
	}{
		{a, "00000001"},
		{a, "00000002"},
		{b, "00000001"}, // another realm counts on its own
		{a, "00000003"},
		{Challenge{Realm: "a", Nonce: "n2", QOP: []string{"auth"}}, "00000001"}, // new nonce restarts
		{Challenge{Realm: "a", Nonce: "n2", QOP: []string{"auth"}}, "00000002"},
		{b, "00000002"},
	}
	for i, s := range steps {
		cr, err := cl.Authorize(s.ch, "INVITE", "sip:bob@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if cr.NC != s.wantNC {
			t.Errorf("step %d: nc %s, want %s", i, cr.NC, s.wantNC)
		}
	}
}

func TestClientNonceCountBounded(t *testing.T) {
	cl := &Client{}
	for i := range 3 * maxClientNonces {
		if _, err := cl.Authorize(Challenge{Realm: string(rune('a' + i)), Nonce: "n", QOP: []string{"auth"}}, "OPTIONS", "sip:x"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(cl.counts); n > maxClientNonces {
		t.Errorf("client keeps %d counters", n)
	}
}

func TestClientAuthorize(t *testing.T) {
	fixed := func() io.Reader { return bytes.NewReader(bytes.Repeat([]byte{0xab}, 16)) }
	const cnonce = "abababababababababababababababab"
	ha1 := md5hex("alice:r:secret")
	ha2 := md5hex("INVITE:sip:bob@r")
	userHash := sha256.Sum256([]byte("alice:r"))
	tests := []struct {
		name string
		ch   Challenge
		want Credentials
		err  error
	}{
		{
			name: "qop auth",
			ch:   Challenge{Realm: "r", Nonce: "n", Opaque: "o", Algorithm: "md5", QOP: []string{"auth-int", "auth"}},
			want: Credentials{Username: "alice", Realm: "r", Nonce: "n", URI: "sip:bob@r", Algorithm: "md5", Opaque: "o",
				QOP: "auth", NC: "00000001", CNonce: cnonce,
				Response: md5hex(ha1 + ":n:00000001:" + cnonce + ":auth:" + ha2)},
		},
		{
			name: "RFC 2069, no qop",
			ch:   Challenge{Realm: "r", Nonce: "n"},
			want: Credentials{Username: "alice", Realm: "r", Nonce: "n", URI: "sip:bob@r",
				Response: md5hex(ha1 + ":n:" + ha2)},
		},
		{
			name: "MD5-sess",
			ch:   Challenge{Realm: "r", Nonce: "n", Algorithm: "MD5-sess", QOP: []string{"auth"}},
			want: Credentials{Username: "alice", Realm: "r", Nonce: "n", URI: "sip:bob@r", Algorithm: "MD5-sess",
				QOP: "auth", NC: "00000001", CNonce: cnonce,
				Response: md5hex(md5hex(ha1+":n:"+cnonce) + ":n:00000001:" + cnonce + ":auth:" + ha2)},
		},
		{
			name: "userhash",
			ch:   Challenge{Realm: "r", Nonce: "n", Algorithm: "SHA-256", QOP: []string{"auth"}, UserHash: true},
			want: Credentials{Username: hex.EncodeToString(userHash[:]), UserHash: true, Realm: "r", Nonce: "n",
				URI: "sip:bob@r", Algorithm: "SHA-256", QOP: "auth", NC: "00000001", CNonce: cnonce,
				Response: lookupAlgorithm("SHA-256").response(HA1("SHA-256", "alice", "r", "secret"), "n", "00000001", cnonce, "auth", "INVITE", "sip:bob@r")},
		},
		{name: "unknown algorithm", ch: Challenge{Realm: "r", Nonce: "n", Algorithm: "SHA-1", QOP: []string{"auth"}}, err: ErrUnsupportedAlgorithm},
		{name: "only auth-int", ch: Challenge{Realm: "r", Nonce: "n", QOP: []string{"auth-int"}}, err: ErrUnsupportedQOP},
		{name: "sess without qop", ch: Challenge{Realm: "r", Nonce: "n", Algorithm: "MD5-sess"}, err: ErrUnsupportedQOP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := &Client{Username: "alice", Password: "secret", Rand: fixed()}
			got, err := cl.Authorize(tt.ch, "INVITE", "sip:bob@r")
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestClientRandError(t *testing.T) {
	cl := &Client{Rand: bytes.NewReader([]byte{1, 2, 3})}
	_, err := cl.Authorize(Challenge{Realm: "r", Nonce: "n", QOP: []string{"auth"}}, "REGISTER", "sip:r")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error %v, want the reader's", err)
	}
}

// TestRoundTrip runs a client against a server through header text, the way
// a REGISTER meets a 401 on the wire.
func TestRoundTrip(t *testing.T) {
	for _, alg := range []string{"MD5", "SHA-256", "SHA-512-256-sess"} {
		t.Run(alg, func(t *testing.T) {
			srv, _ := newTestServer()
			// The server offers two algorithms; the client picks one.
			var offered []Challenge
			for _, a := range []string{alg, "MD5"} {
				ch, err := srv.Challenge(a, false)
				if err != nil {
					t.Fatal(err)
				}
				parsed, err := ParseChallenge(ch.String())
				if err != nil {
					t.Fatal(err)
				}
				offered = append(offered, parsed)
			}
			ch, ok := Select(offered)
			if !ok || ch.Algorithm != alg {
				t.Fatalf("Select picked %q, %v", ch.Algorithm, ok)
			}
			cl := &Client{Username: "bob", Password: users["bob"]}
			for range 3 {
				cr, err := cl.Authorize(ch, "REGISTER", "sip:example.com")
				if err != nil {
					t.Fatal(err)
				}
				got, err := ParseCredentials(cr.String())
				if err != nil {
					t.Fatal(err)
				}
				if err := srv.Verify(got, "REGISTER", lookup(got.Username)); err != nil {
					t.Fatalf("nc %s: %v", got.NC, err)
				}
			}
		})
	}
}

func TestSelect(t *testing.T) {
	md5 := Challenge{Realm: "r", Nonce: "1"}
	md5Named := Challenge{Realm: "r", Nonce: "2", Algorithm: "MD5", QOP: []string{"auth"}}
	sha := Challenge{Realm: "r", Nonce: "3", Algorithm: "sha-256", QOP: []string{"auth"}}
	sha512 := Challenge{Realm: "r", Nonce: "4", Algorithm: "SHA-512-256", QOP: []string{"auth"}}
	authInt := Challenge{Realm: "r", Nonce: "5", Algorithm: "SHA-512-256", QOP: []string{"auth-int"}}
	unknown := Challenge{Realm: "r", Nonce: "6", Algorithm: "SHA3-256"}
	tests := []struct {
		name string
		in   []Challenge
		want Challenge
		ok   bool
	}{
		{"none", nil, Challenge{}, false},
		{"only unusable", []Challenge{authInt, unknown}, Challenge{}, false},
		{"sha-256 over md5", []Challenge{md5, sha}, sha, true},
		{"sha-256 first", []Challenge{sha, md5}, sha, true},
		{"strongest", []Challenge{md5, sha, sha512}, sha512, true},
		{"skip auth-int only", []Challenge{authInt, sha}, sha, true},
		{"first of equals", []Challenge{md5Named, md5}, md5Named, true},
		{"skip unknown", []Challenge{unknown, md5}, md5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Select(tt.in)
			if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Select = %#v, %v; want %#v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
