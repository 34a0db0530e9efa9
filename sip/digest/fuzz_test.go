package digest

import (
	"reflect"
	"strings"
	"testing"
)

var challengeSeeds = []string{
	"Digest\r\n       realm=\"http-auth@example.org\",\r\n       qop=\"auth, auth-int\",\r\n       algorithm=SHA-256,\r\n       nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n       opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
	`Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
	`digest REALM = "a \"b\"" ,, nonce=abc/def==, stale=TRUE, userhash=true, domain="sip:a sip:b", x=y`,
	`Basic realm="x"`,
	`Digest realm="x`,
}

var credentialSeeds = []string{
	"Digest username=\"Mufasa\",\r\n       realm=\"http-auth@example.org\",\r\n       uri=\"/dir/index.html\",\r\n       algorithm=SHA-256,\r\n       nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n       nc=00000001,\r\n       cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n       qop=auth,\r\n       response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\",\r\n       opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
	`Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
	`DIGEST Username="a\\b", realm="", nonce=n, uri="sip:x;transport=ws", response="", qop="auth", userhash=TRUE, username*=UTF-8''x`,
	`Digest username="u"`,
}

// FuzzParseChallenge checks that parsing never panics and that whatever
// parses survives String and a second parse unchanged.
func FuzzParseChallenge(f *testing.F) {
	for _, s := range challengeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ch, err := ParseChallenge(in)
		if err != nil {
			return
		}
		out := ch.String()
		if strings.ContainsAny(out, "\r\n\x00") {
			t.Fatalf("String emitted a control character: %q", out)
		}
		again, err := ParseChallenge(out)
		if err != nil {
			t.Fatalf("reparse of %q: %v", out, err)
		}
		if !reflect.DeepEqual(again, ch) {
			t.Fatalf("round trip changed\n%#v\n%#v", ch, again)
		}
		if again.String() != out {
			t.Fatalf("String not stable: %q then %q", out, again.String())
		}
	})
}

// FuzzParseCredentials is FuzzParseChallenge for credentials.
func FuzzParseCredentials(f *testing.F) {
	for _, s := range credentialSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseCredentials(in)
		if err != nil {
			return
		}
		out := c.String()
		if strings.ContainsAny(out, "\r\n\x00") {
			t.Fatalf("String emitted a control character: %q", out)
		}
		again, err := ParseCredentials(out)
		if err != nil {
			t.Fatalf("reparse of %q: %v", out, err)
		}
		if again != c {
			t.Fatalf("round trip changed\n%#v\n%#v", c, again)
		}
		if again.String() != out {
			t.Fatalf("String not stable: %q then %q", out, again.String())
		}
	})
}
