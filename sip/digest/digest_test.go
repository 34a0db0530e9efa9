package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

const (
	rfc7616Nonce  = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
	rfc7616CNonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
	rfc7616Opaque = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
	rfc7616Realm  = "http-auth@example.org"
)

// TestRFCVectors checks the response computation against the worked
// examples of RFC 7616 §3.9.1 and RFC 2617 §3.5.
func TestRFCVectors(t *testing.T) {
	tests := []struct {
		name, alg, user, realm, pass, nonce, cnonce, want string
	}{
		{"RFC 7616 MD5", "MD5", "Mufasa", rfc7616Realm, "Circle of Life", rfc7616Nonce, rfc7616CNonce,
			"8ca523f5e9506fed4657c9700eebdbec"},
		{"RFC 7616 SHA-256", "SHA-256", "Mufasa", rfc7616Realm, "Circle of Life", rfc7616Nonce, rfc7616CNonce,
			"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
		{"RFC 2617", "", "Mufasa", "testrealm@host.com", "Circle Of Life", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "0a4f113b",
			"6629fae49393a05397450978507c4ef1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := lookupAlgorithm(tt.alg)
			ha1 := HA1(tt.alg, tt.user, tt.realm, tt.pass)
			got := a.response(ha1, tt.nonce, "00000001", tt.cnonce, "auth", "GET", "/dir/index.html")
			if got != tt.want {
				t.Errorf("response = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRFCHeaders parses the RFC example headers and checks that their
// response matches what the parsed fields produce.
func TestRFCHeaders(t *testing.T) {
	tests := []struct{ name, header, pass string }{
		{"RFC 7616 MD5", "Digest username=\"Mufasa\",\r\n       realm=\"http-auth@example.org\",\r\n       uri=\"/dir/index.html\",\r\n       algorithm=MD5,\r\n       nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n       nc=00000001,\r\n       cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n       qop=auth,\r\n       response=\"8ca523f5e9506fed4657c9700eebdbec\",\r\n       opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"", "Circle of Life"},
		{"RFC 7616 SHA-256", "Digest username=\"Mufasa\",\r\n       realm=\"http-auth@example.org\",\r\n       uri=\"/dir/index.html\",\r\n       algorithm=SHA-256,\r\n       nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n       nc=00000001,\r\n       cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n       qop=auth,\r\n       response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\",\r\n       opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"", "Circle of Life"},
		{"RFC 2617", "Digest username=\"Mufasa\",\n                 realm=\"testrealm@host.com\",\n                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\n                 uri=\"/dir/index.html\",\n                 qop=auth,\n                 nc=00000001,\n                 cnonce=\"0a4f113b\",\n                 response=\"6629fae49393a05397450978507c4ef1\",\n                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"", "Circle Of Life"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCredentials(tt.header)
			if err != nil {
				t.Fatal(err)
			}
			a := lookupAlgorithm(c.Algorithm)
			got := a.response(HA1(c.Algorithm, c.Username, c.Realm, tt.pass), c.Nonce, c.NC, c.CNonce, c.QOP, "GET", c.URI)
			if got != c.Response {
				t.Errorf("response = %s, header has %s", got, c.Response)
			}
		})
	}
}

func TestHA1(t *testing.T) {
	sha := sha256.Sum256([]byte("alice:example.com:secret"))
	tests := []struct{ alg, want string }{
		{"", "b1726872c344b6dc8365b774f8fd6412"},
		{"MD5", "b1726872c344b6dc8365b774f8fd6412"},
		{"md5-SESS", "b1726872c344b6dc8365b774f8fd6412"},
		{"sha-256", hex.EncodeToString(sha[:])},
		{"SHA-256-sess", hex.EncodeToString(sha[:])},
		{"SHA-1", ""},
	}
	for _, tt := range tests {
		if got := HA1(tt.alg, "alice", "example.com", "secret"); got != tt.want {
			t.Errorf("HA1(%q) = %q, want %q", tt.alg, got, tt.want)
		}
	}
	if n := len(HA1("SHA-512-256", "a", "b", "c")); n != 64 {
		t.Errorf("SHA-512-256 HA1 has %d hex digits, want 64", n)
	}
}

// The default is a fresh slice each time: one server changing its copy
// cannot change another's.
func TestDefaultAlgorithms(t *testing.T) {
	a := DefaultAlgorithms()
	if len(a) != 1 || a[0] != "MD5" {
		t.Fatalf("DefaultAlgorithms() = %q, want [MD5]", a)
	}
	a[0] = "SHA-256"
	if b := DefaultAlgorithms(); b[0] != "MD5" {
		t.Fatalf("a caller changed the default: %q", b)
	}
}
