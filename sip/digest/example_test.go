package digest_test

import (
	"errors"
	"fmt"

	"github.com/switchboard/switchboard/sip/digest"
)

// A registrar challenges a REGISTER, the phone answers, the registrar
// verifies. The account store keeps HA1 values, never passwords.
func ExampleServer() {
	srv := &digest.Server{Realm: "example.com", Secret: []byte("0123456789abcdef0123456789abcdef")}
	stored := map[string]string{"SHA-256": digest.HA1("SHA-256", "alice", "example.com", "secret")}

	// 401 Unauthorized with WWW-Authenticate: ch.String().
	ch, err := srv.Challenge("SHA-256", false)
	if err != nil {
		panic(err)
	}

	// The phone parses the header and answers it.
	parsed, _ := digest.ParseChallenge(ch.String())
	phone := &digest.Client{Username: "alice", Password: "secret"}
	cred, _ := phone.Authorize(parsed, "REGISTER", "sip:example.com")
	header := cred.String() // Authorization: header

	// The registrar verifies it.
	got, _ := digest.ParseCredentials(header)
	lookup := func(alg string) (string, bool) {
		ha1, ok := stored[alg]
		return ha1, ok
	}
	fmt.Println(srv.Verify(got, "REGISTER", lookup))

	// The same header again is a replay: re-challenge with stale=true.
	err = srv.Verify(got, "REGISTER", lookup)
	fmt.Println(errors.Is(err, digest.ErrReplay))

	// An unknown user costs the same work and gets a wrong password's error.
	got.Username = "mallory"
	fmt.Println(srv.VerifyUnknown(got, "REGISTER"))
	// Output:
	// <nil>
	// true
	// digest: bad response
}

// A trunk client picks the strongest of the challenges of a 401.
func ExampleSelect() {
	var challenges []digest.Challenge
	for _, h := range []string{
		`Digest realm="pbx.example", nonce="a1", algorithm=MD5, qop="auth"`,
		`Digest realm="pbx.example", nonce="b2", algorithm=SHA-256, qop="auth,auth-int"`,
	} {
		ch, err := digest.ParseChallenge(h)
		if err != nil {
			panic(err)
		}
		challenges = append(challenges, ch)
	}
	ch, ok := digest.Select(challenges)
	fmt.Println(ch.Algorithm, ch.Nonce, ok)
	// Output: SHA-256 b2 true
}

func ExampleHA1() {
	fmt.Println(digest.HA1("MD5", "Mufasa", "http-auth@example.org", "Circle of Life"))
	// Output: 3d78807defe7de2157e2b0b6573a855f
}
