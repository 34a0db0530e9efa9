package digest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkVerify measures a successful Verify, including the nonce-count
// bookkeeping. Credentials are made in batches with the timer stopped: each
// nonce count may be accepted once, so they cannot be reused. The -resent
// ones go through VerifyResent, as the proxy's do: the request's
// fingerprint on top.
func BenchmarkVerify(b *testing.B) {
	// About as long as an INVITE with its SDP (650 bytes).
	request := []byte("UDP 127.0.0.2:5060 0\n" + strings.Repeat("INVITE sip:u1@localhost SIP/2.0\r\n", 19))
	appendRequest := bytesOf(request)
	for _, name := range []string{"MD5", "SHA-256", "SHA-256-resent"} {
		alg, resent := strings.CutSuffix(name, "-resent")
		b.Run(name, func(b *testing.B) {
			srv, _ := newTestServer()
			ha1 := HA1(alg, "alice", testRealm, users["alice"])
			lk := func(string) (string, bool) { return ha1, true }
			const batch = 1024
			creds := make([]Credentials, 0, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%batch == 0 {
					b.StopTimer()
					creds = creds[:0]
					ch, _ := srv.Challenge(alg, false)
					cl := &Client{Username: "alice", Password: users["alice"]}
					for range batch {
						cr, _ := cl.Authorize(ch, "REGISTER", "sip:example.com")
						creds = append(creds, cr)
					}
					b.StartTimer()
				}
				var err error
				if resent {
					_, err = srv.VerifyResent(creds[i%batch], "REGISTER", appendRequest, lk)
				} else {
					err = srv.Verify(creds[i%batch], "REGISTER", lk)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseCredentials(b *testing.B) {
	h := `Digest username="alice", realm="example.com", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:example.com;transport=ws", response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", algorithm=SHA-256, cnonce="0a4f113b0a4f113b0a4f113b0a4f113b", qop=auth, nc=00000001`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCredentials(h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChallenge(b *testing.B) {
	srv, _ := newTestServer()
	b.ReportAllocs()
	for b.Loop() {
		ch, _ := srv.Challenge("SHA-256", false)
		_ = ch.String()
	}
}

func BenchmarkChallengeHeader(b *testing.B) {
	srv, _ := newTestServer()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = srv.ChallengeHeader("SHA-256", false)
	}
}

// BenchmarkTrackFull measures the replay table at its cap, as under a
// sustained load of registrations: every op tracks a new nonce and evicts
// the oldest of the DefaultMaxTrackedNonces tracked, whose entries are
// far apart in memory (the cost is mostly cache misses).
func BenchmarkTrackFull(b *testing.B) {
	srv, _ := newTestServer()
	srv.once.Do(srv.init)
	nonce := func(i int) string { return fmt.Sprintf("%043d", i) }
	now := int64(time.Hour)
	for i := range DefaultMaxTrackedNonces {
		if _, err := srv.track(nonce(i), "alice", now+int64(i), 1, 0, now+int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = nonce(DefaultMaxTrackedNonces + i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at := now + int64(DefaultMaxTrackedNonces+i)
		if _, err := srv.track(keys[i], "alice", at, 1, 0, at); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNormalizeHA1 is the check of a stored HA1 (lowercase, as
// stores keep them) that every Verify makes.
func BenchmarkNormalizeHA1(b *testing.B) {
	a := lookupAlgorithm("SHA-256")
	ha1 := HA1("SHA-256", "alice", testRealm, users["alice"])
	for b.Loop() {
		if _, ok := normalizeHA1(ha1, true, a); !ok {
			b.Fatal("refused")
		}
	}
}
