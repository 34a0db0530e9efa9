package registrar_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// FuzzServeRegister feeds arbitrary REGISTERs to the registrar, first as
// they are and then with valid credentials for their To user, so that the
// fuzzer reaches the binding code too. Whatever the input, the registrar
// must answer with a response that serialises to a parseable message.
func FuzzServeRegister(f *testing.F) {
	for _, name := range []string{"cparam01", "cparam02", "regescrt", "escnull", "regaut01", "unksm2"} {
		if data, err := os.ReadFile(filepath.Join(tortureDir, name+".dat")); err == nil {
			f.Add(data)
		}
	}
	f.Add(msg{contacts: []string{"<sip:a@192.0.2.1>;q=0.5;expires=70", "<sip:b@x.invalid>;expires=0"}, expires: "99"}.bytes())
	f.Add(jssip("a.invalid").bytes())
	f.Add(msg{contacts: []string{"*"}, expires: "0"}.bytes())
	f.Add(msg{vias: 2, contacts: []string{"<sip:a@x.invalid>;reg-id=1;+sip.instance=\"<u>\""},
		headers: []string{"Supported: outbound, path", "Path: <sip:e.example.com;lr;ob>"}}.bytes())

	c := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	store, _ := accounts.NewStore([]accounts.Account{
		accounts.FromPassword("alice", domain, "secret"),
		accounts.FromPassword("watson", domain, "secret"),
	})
	loc, err := location.Open(location.Options{Clock: c, MaxBindingsPerAOR: 5})
	if err != nil {
		f.Fatal(err)
	}
	defer loc.Close()
	srv := &digest.Server{Realm: domain, Now: c.Now}
	reg, err := registrar.New(registrar.Options{Identity: registrar.DomainIdentity(domain), Accounts: store, Location: loc, Digest: srv, Clock: c})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := sip.ParseDatagram(data)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		check := func(req *sip.Request) {
			res := reg.ServeRegister(ctx, req)
			if res == nil {
				t.Fatal("nil response")
			}
			if _, err := sip.ParseMessage(res.AppendTo(nil)); err != nil {
				t.Fatalf("response does not parse: %v\n%s", err, res)
			}
		}
		check(req.Clone())
		ch, _ := srv.Challenge("SHA-256", false)
		cl := &digest.Client{Username: req.To().URI.User, Password: "secret"}
		cred, err := cl.Authorize(ch, req.Method, req.URI.String())
		if err != nil {
			return
		}
		req.Add("Authorization", cred.String())
		check(req)
		c.Advance(time.Minute) // let bindings expire between inputs
	})
}
