package registrar_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/sip"
)

// TestSetToTag: the To of a response is the request's with a new tag,
// whatever form it takes, as Response.SetToTag would write it; a To that
// has a tag keeps it.
func TestSetToTag(t *testing.T) {
	tags := map[string]bool{}
	for _, to := range []string{
		"<sip:alice@example.com>",
		"sip:alice@example.com",
		"sip:alice@example.com;user=phone;x=\"a b\"",
		"\"Alice \\\"A\\\"\" <sip:alice@example.com;transport=tcp>;foo;bar=1",
		"Alice <sip:alice@example.com>",
		"<sip:alice@example.com>;" + fmt.Sprintf("p=%0300d", 1), // past the stack buffer
		"<sip:alice@example.com>;tag=kept",
		"<sip:alice@example.com>;tag", // a tag without a value is replaced
	} {
		req := parse(t, []byte("REGISTER sip:example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"+
			"From: <sip:alice@example.com>;tag=f\r\nTo: "+to+"\r\n"+
			"Call-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))
		res := sip.NewResponse(req, 200, "")
		registrar.SetToTag(res)
		want := sip.NewResponse(req, 200, "")
		in := req.To()
		got := res.To()
		if in.Tag() != "" {
			if got.Tag() != in.Tag() || res.Get("To") != want.Get("To") {
				t.Errorf("To %q: tag became %q (%q)", to, got.Tag(), res.Get("To"))
			}
			continue
		}
		tag := got.Tag()
		if len(tag) != len(sip.NewTag()) || tags[tag] {
			t.Errorf("To %q: tag %q, want one of sip.NewTag's never seen before", to, tag)
		}
		tags[tag] = true
		// The same address as SetToTag with that tag would write.
		want.SetToTag(tag)
		w := want.To()
		if !got.URI.Equal(&w.URI) || got.Display != w.Display || got.Params.Len() != w.Params.Len() {
			t.Errorf("To %q: got %q, SetToTag writes %q", to, res.Get("To"), want.Get("To"))
		}
		w.Params.Range(func(name, value string) bool {
			if v, ok := got.Params.Get(name); !ok || v != value {
				t.Errorf("To %q: parameter %s=%q is %q in %q", to, name, value, v, res.Get("To"))
			}
			return true
		})
	}
}

// TestContactValue: a Contact of a 200 is the binding's with expires set
// to the seconds left, appended or replaced.
func TestContactValue(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct{ contact, want string }{
		{"<sip:a@192.0.2.1:5060>", "<sip:a@192.0.2.1:5060>;expires=61"},
		{"\"A\" <sip:a@192.0.2.1;transport=tcp>;+sip.instance=\"<urn:uuid:1>\";reg-id=1", "\"A\" <sip:a@192.0.2.1;transport=tcp>;+sip.instance=\"<urn:uuid:1>\";reg-id=1;expires=61"},
		{"<sip:a@192.0.2.1>;expires=3600;q=0.5", "<sip:a@192.0.2.1>;expires=61;q=0.5"},
	} {
		c, err := sip.ParseAddress(tc.contact)
		if err != nil {
			t.Fatal(err)
		}
		b := location.Binding{Contact: c, Expires: now.Add(60*time.Second + time.Millisecond)}
		if got := registrar.ContactValue(&b, now); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.contact, got, tc.want)
		}
	}
}

// BenchmarkReply is a response of the registrar without headers of its
// own, two a registration: the response, and its To with 64 random bits
// in hex as the tag.
func BenchmarkReply(b *testing.B) {
	req := parse(b, []byte("REGISTER sip:example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"+
		"From: <sip:alice@example.com>;tag=f\r\nTo: <sip:alice@example.com>\r\n"+
		"Call-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))
	b.ReportAllocs()
	for b.Loop() {
		res := sip.NewResponse(req, 200, "")
		registrar.SetToTag(res)
	}
}
