package registrar_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// tortureDir is the RFC 4475 corpus, kept with the sip package.
const tortureDir = "../../sip/testdata/torture"

func loadTorture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tortureDir, name+".dat"))
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("torture corpus: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// registerTorture sends a torture REGISTER as its UA would: as it is
// first, then again with credentials for its To user and the next CSeq.
// The messages are used as they are: their domain is example.com, the
// test registrar's.
func registerTorture(t *testing.T, e *env, name string) (first, final *sip.Response) {
	t.Helper()
	data := loadTorture(t, name)
	req := parse(t, data)
	req.Source = udpSource
	first = e.serve(req)
	if first.StatusCode != 401 {
		return first, first
	}
	user := sip.URI{Scheme: "sip", User: req.To().URI.User, Host: domain}
	u := e.ua(escapedUserOf(user))
	u.challenge(first)
	retry := req.Clone()
	retry.Set("CSeq", strconv.FormatUint(uint64(req.CSeq().Seq)+1, 10)+" REGISTER")
	u.authorize(retry)
	return first, e.serve(retry)
}

// escapedUserOf returns the user part as written in the canonical URI,
// the name its account has.
func escapedUserOf(u sip.URI) string {
	s := u.String()
	return s[len("sip:") : len(s)-len("@"+domain)]
}

func TestTorture(t *testing.T) {
	t.Run("cparam01", func(t *testing.T) {
		// Contact without <>: ";unknownparam" is a header parameter.
		e := newEnv(t)
		_, res := registerTorture(t, e, "cparam01")
		want(t, res, 200, "OK")
		if got := res.Get("Contact"); got != "<sip:+19725552222@gw1.example.net>;unknownparam;expires=3600" {
			t.Errorf("200 Contact %q: unknownparam must stay outside the URI", got)
		}
		b := e.bindings("sip:watson@example.com")[0]
		if b.Contact.URI.Params != "" || !b.Contact.Params.Has("unknownparam") {
			t.Errorf("stored contact %s", b.Contact.String())
		}
	})
	t.Run("cparam02", func(t *testing.T) {
		// Contact <...;unknownparam>: a URI parameter, kept in the URI.
		e := newEnv(t)
		_, res := registerTorture(t, e, "cparam02")
		want(t, res, 200, "OK")
		if got := res.Get("Contact"); got != "<sip:+19725552222@gw1.example.net;unknownparam>;expires=3600" {
			t.Errorf("200 Contact %q", got)
		}
		if b := e.bindings("sip:watson@example.com")[0]; !b.Contact.URI.Params.Has("unknownparam") {
			t.Errorf("stored contact %s lost its URI parameter", b.Contact.String())
		}
	})
	t.Run("regescrt", func(t *testing.T) {
		// An escaped Route header inside the Contact URI is part of the
		// binding.
		e := newEnv(t)
		_, res := registerTorture(t, e, "regescrt")
		want(t, res, 200, "OK")
		const uri = "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
		wantListed(t, res, uri+" 3600")
		if b := e.bindings("sip:user@example.com")[0]; b.Contact.URI.String() != uri {
			t.Errorf("stored %s", b.Contact.URI.String())
		}
	})
	t.Run("escnull", func(t *testing.T) {
		// %00 in the AOR does not truncate it; %00 and %00%00 are two
		// bindings.
		e := newEnv(t)
		_, res := registerTorture(t, e, "escnull")
		want(t, res, 200, "OK")
		wantListed(t, res, "sip:%00@host5.example.com 3600", "sip:%00%00@host5.example.com 3600")
		bs := e.bindings("sip:null-%00-null@example.com")
		if len(bs) != 2 || bs[0].Contact.URI.User == bs[1].Contact.URI.User {
			t.Fatalf("bindings %+v", bs)
		}
		if n := len(e.bindings("sip:null-@example.com")); n != 0 {
			t.Error("the AOR was truncated at the NUL")
		}
	})
	t.Run("regaut01", func(t *testing.T) {
		// An Authorization of an unknown scheme: challenged in Digest,
		// and ignored beside the Digest answer.
		e := newEnv(t)
		first, res := registerTorture(t, e, "regaut01")
		want(t, first, 401, "Unauthorized")
		if chs := challenges(t, first); len(chs) != 2 {
			t.Errorf("challenges %+v", chs)
		}
		want(t, res, 200, "OK")
		wantListed(t, res) // no Contact: a query
	})
	t.Run("unksm2", func(t *testing.T) {
		// To is an isbn: URI: not an AOR, 400 before any challenge.
		e := newEnv(t)
		first, _ := registerTorture(t, e, "unksm2")
		want(t, first, 400, "To Is Not a SIP URI")
	})
	// scalar02 (CSeq beyond 2^32-1) and regbadct (a Contact URI with
	// headers outside <>) never reach the registrar: the parser rejects
	// them with the status the transport answers.
	for name, reason := range map[string]string{"scalar02": "Malformed CSeq", "regbadct": "Malformed Contact"} {
		t.Run(name, func(t *testing.T) {
			_, err := sip.ParseDatagram(loadTorture(t, name))
			var perr *sip.ParseError
			if !errors.As(err, &perr) || perr.Status != 400 || perr.Reason != reason {
				t.Errorf("parse error %v, want 400 %s", err, reason)
			}
		})
	}
}
