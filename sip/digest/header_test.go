package digest

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/ascii"
)

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   Challenge
	}{
		{
			name:   "RFC 7616 folded",
			header: "Digest\r\n       realm=\"http-auth@example.org\",\r\n       qop=\"auth, auth-int\",\r\n       algorithm=SHA-256,\r\n       nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n       opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
			want: Challenge{Realm: rfc7616Realm, Nonce: rfc7616Nonce, Opaque: rfc7616Opaque,
				Algorithm: "SHA-256", QOP: []string{"auth", "auth-int"}},
		},
		{
			name:   "odd spacing lowercase scheme",
			header: "  digest   REALM = \"a b\" ,nonce=\"n\",,  stale=TRUE , algorithm = md5 , qop=auth\t",
			want:   Challenge{Realm: "a b", Nonce: "n", Stale: true, Algorithm: "md5", QOP: []string{"auth"}},
		},
		{
			name:   "escaped quotes",
			header: `Digest realm="say \"hi\" \\o/", nonce="x\y"`,
			want:   Challenge{Realm: `say "hi" \o/`, Nonce: "xy"},
		},
		{
			name:   "unknown params",
			header: `Digest foo=bar, realm="r", x="a,b\"c", nonce="n", charset=UTF-8`,
			want:   Challenge{Realm: "r", Nonce: "n"},
		},
		{
			name:   "quoted bare params",
			header: `Digest realm="r", nonce="n", algorithm="SHA-256", stale="true", userhash=true, domain="sip:a sip:b", opaque="o"`,
			want: Challenge{Realm: "r", Nonce: "n", Algorithm: "SHA-256", Stale: true, UserHash: true,
				Domain: "sip:a sip:b", Opaque: "o"},
		},
		{
			name:   "unquoted base64 nonce",
			header: `Digest realm=r, nonce=abc/def==, stale=false, qop=""`,
			want:   Challenge{Realm: "r", Nonce: "abc/def=="},
		},
		{
			name:   "empty realm and utf-8",
			header: "Digest realm=\"\", nonce=\"caf\xc3\xa9\"",
			want:   Challenge{Nonce: "caf\xc3\xa9"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseChallenge(tt.header)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v\nwant %#v", got, tt.want)
			}
			again, err := ParseChallenge(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip of %s: %#v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   error
		msg    string // part of the message, if it matters
	}{
		{"basic", `Basic realm="x"`, ErrUnsupportedScheme, `"Basic"`},
		{"bearer", `Bearer abc.def`, ErrUnsupportedScheme, ""},
		{"glued", `Digestrealm="a"`, ErrUnsupportedScheme, ""},
		{"empty", ``, ErrMalformed, "missing auth scheme"},
		{"no scheme", `"Digest" realm="x"`, ErrMalformed, ""},
		{"no space after scheme", `Digest,realm="x", nonce="n"`, ErrMalformed, ""},
		{"no params", `Digest`, ErrMalformed, "missing realm"},
		{"missing nonce", `Digest realm="x"`, ErrMalformed, "missing nonce"},
		{"unterminated", `Digest nonce="n", realm="x`, ErrMalformed, "unterminated"},
		{"no comma", `Digest realm="x" nonce="n"`, ErrMalformed, "missing comma after realm"},
		{"empty value", `Digest realm=, nonce="n"`, ErrMalformed, "missing value for realm"},
		{"no equals", `Digest realm "a", nonce="n"`, ErrMalformed, ""},
		{"bad name", `Digest =x`, ErrMalformed, ""},
		{"duplicate", `Digest realm="a", Realm="b", nonce="n"`, ErrMalformed, "duplicate realm"},
		{"nul", "Digest realm=\"a\x00\", nonce=\"n\"", ErrMalformed, "control character"},
		{"crlf injection", "Digest realm=\"a\r\nVia: x\", nonce=\"n\"", ErrMalformed, ""},
		{"escaped cr", "Digest realm=\"a\\\r\", nonce=\"n\"", ErrMalformed, "bad escape"},
		{"trailing backslash", `Digest realm="a\`, ErrMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, parse := range []func(string) error{
				func(s string) error { _, err := ParseChallenge(s); return err },
				func(s string) error { _, err := ParseCredentials(s); return err },
			} {
				err := parse(tt.header)
				if !errors.Is(err, tt.want) {
					t.Fatalf("error %v, want %v", err, tt.want)
				}
				if tt.msg != "" && strings.Contains(tt.msg, "missing") {
					continue // which param is missing differs between the two
				}
				if !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("error %q does not mention %q", err, tt.msg)
				}
			}
		})
	}
}

func TestParseCredentials(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   Credentials
	}{
		{
			name:   "RFC 2617",
			header: "Digest username=\"Mufasa\",\n                 realm=\"testrealm@host.com\",\n                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\n                 uri=\"/dir/index.html\",\n                 qop=auth,\n                 nc=00000001,\n                 cnonce=\"0a4f113b\",\n                 response=\"6629fae49393a05397450978507c4ef1\",\n                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
			want: Credentials{Username: "Mufasa", Realm: "testrealm@host.com", Nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
				URI: "/dir/index.html", QOP: "auth", NC: "00000001", CNonce: "0a4f113b",
				Response: "6629fae49393a05397450978507c4ef1", Opaque: "5ccc069c403ebaf9f0171e9517f40e41"},
		},
		{
			name:   "SIP with unknown params and quoted qop",
			header: `DIGEST Username="alice", realm="example.com", nonce="n", uri="sip:example.com;transport=ws", response="abc", qop="auth", nc="00000002", cnonce="c", algorithm=SHA-256, userhash=TRUE, username*=UTF-8''x, charset=UTF-8`,
			want: Credentials{Username: "alice", Realm: "example.com", Nonce: "n", URI: "sip:example.com;transport=ws",
				Response: "abc", QOP: "auth", NC: "00000002", CNonce: "c", Algorithm: "SHA-256", UserHash: true},
		},
		{
			name:   "RFC 2069 style",
			header: `Digest username="a\"b", realm="r", nonce="n", uri="sip:x", response="abc"`,
			want:   Credentials{Username: `a"b`, Realm: "r", Nonce: "n", URI: "sip:x", Response: "abc"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCredentials(tt.header)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %#v\nwant %#v", got, tt.want)
			}
			again, err := ParseCredentials(got.String())
			if err != nil || again != got {
				t.Fatalf("round trip of %s: %#v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseCredentialsMissing(t *testing.T) {
	full := map[string]string{"username": `"u"`, "realm": `"r"`, "nonce": `"n"`, "uri": `"sip:x"`, "response": `"abc"`}
	for _, missing := range []string{"username", "realm", "nonce", "uri", "response"} {
		t.Run(missing, func(t *testing.T) {
			var parts []string
			for _, name := range credentialParams[:5] {
				if name != missing {
					parts = append(parts, name+"="+full[name])
				}
			}
			_, err := ParseCredentials("Digest " + strings.Join(parts, ", "))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "missing "+missing) {
				t.Fatalf("error %v, want one naming %s", err, missing)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{
			"challenge",
			Challenge{Realm: "example.com", Domain: "sip:example.com", Nonce: "n", Opaque: "o", Algorithm: "SHA-256",
				QOP: []string{"auth", "auth-int"}, Stale: true, UserHash: true}.String(),
			`Digest realm="example.com", domain="sip:example.com", nonce="n", opaque="o", stale=true, algorithm=SHA-256, qop="auth,auth-int", userhash=true`,
		},
		{"zero challenge", Challenge{}.String(), `Digest realm="", nonce=""`},
		{
			"credentials",
			Credentials{Username: "alice", Realm: "example.com", Nonce: "n", URI: "sip:example.com", Response: "r",
				Algorithm: "MD5", CNonce: "c", Opaque: "o", QOP: "auth", NC: "00000001", UserHash: true}.String(),
			`Digest username="alice", realm="example.com", nonce="n", uri="sip:example.com", response="r", algorithm=MD5, cnonce="c", opaque="o", qop=auth, nc=00000001, userhash=true`,
		},
		{"zero credentials", Credentials{}.String(), `Digest username="", realm="", nonce="", uri="", response=""`},
		{"escapes", Challenge{Realm: `say "hi" \o/`, Nonce: "n"}.String(), `Digest realm="say \"hi\" \\o/", nonce="n"`},
		{"no header injection", Challenge{Realm: "a\r\nVia: evil\x00", Nonce: "n"}.String(), `Digest realm="aVia: evil", nonce="n"`},
		{"bare falls back to quoted", Credentials{Username: "u", Algorithm: "MD5 x", QOP: "a,b", NC: `1"`}.String(),
			`Digest username="u", realm="", nonce="", uri="", response="", algorithm="MD5 x", qop="a,b", nc="1\""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got  %s\nwant %s", tt.got, tt.want)
			}
		})
	}
}

// TestCharClass checks the byte tables against the rules they stand for,
// every byte.
func TestCharClass(t *testing.T) {
	for c := range 256 {
		b := byte(c)
		alnum := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
		if want := alnum || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0; isTokenChar(b) != want {
			t.Errorf("isTokenChar(%#x) = %v", b, !want)
		}
		if want := b != '"' && b != '\\' && !isCTL(b); (charClass[b]&cQuoted != 0) != want {
			t.Errorf("cQuoted(%#x) = %v", b, !want)
		}
		if want := b == ' ' || b == '\t' || b == '\r' || b == '\n'; isLWS(b) != want {
			t.Errorf("isLWS(%#x) = %v", b, !want)
		}
		if want := b > ' ' && b != 0x7f && b != ',' && b != '"'; isBareChar(b) != want {
			t.Errorf("isBareChar(%#x) = %v", b, !want)
		}
	}
}

// TestParamNameFold checks the parameter names' comparison against
// strings.EqualFold for every token of one byte and for each name with
// each of its letters changed to every token byte.
func TestParamNameFold(t *testing.T) {
	for _, names := range [][]string{credentialParams, challengeParams} {
		for _, n := range names {
			if strings.ToLower(n) != n || strings.Trim(n, "abcdefghijklmnopqrstuvwxyz") != "" {
				t.Fatalf("parameter name %q is not lowercase letters, as lookupParam needs", n)
			}
			for i := range len(n) {
				for c := range 256 {
					if !isTokenChar(byte(c)) {
						continue
					}
					s := n[:i] + string(rune(c)) + n[i+1:]
					if got, want := ascii.EqualFold(n, s), strings.EqualFold(n, s); got != want {
						t.Errorf("EqualFold(%q, %q) = %v, want %v", n, s, got, want)
					}
				}
			}
			for _, s := range []string{"", n[:len(n)-1], n + "x", strings.ToUpper(n)} {
				if got, want := ascii.EqualFold(n, s), strings.EqualFold(n, s); got != want {
					t.Errorf("EqualFold(%q, %q) = %v, want %v", n, s, got, want)
				}
			}
		}
	}
}

// TestPlainRun checks the eight-byte steps against the byte table:
// every byte in every position of a plain string, and strings of random
// bytes.
func TestPlainRun(t *testing.T) {
	ref := func(s string, i int) int {
		for i < len(s) && charClass[s[i]]&cQuoted != 0 {
			i++
		}
		return i
	}
	check := func(s string, i int) {
		t.Helper()
		if got, want := plainRun(s, i), ref(s, i); got != want {
			t.Fatalf("plainRun(%q, %d) = %d, want %d", s, i, got, want)
		}
	}
	for pos := range 20 {
		for c := range 256 {
			w := []byte("abcdefghijklmnopqrst")
			w[pos] = byte(c)
			for i := range 3 {
				check(string(w), i)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		w := make([]byte, rng.IntN(40))
		for i := range w {
			// Mostly plain, so that long runs come up too.
			w[i] = byte(0x20 + rng.IntN(0x60))
			if rng.IntN(32) == 0 {
				w[i] = byte(rng.IntN(256))
			}
		}
		check(string(w), 0)
	}
}
