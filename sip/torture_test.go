package sip

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tortureDir is the RFC 4475 / RFC 5118 corpus, a copy of ../shared/torture
// kept in the repository so that a clone alone runs every case.
const tortureDir = "testdata/torture"

type tortureCase struct {
	name, validity, expected string
	data                     []byte
}

func loadTorture(t testing.TB) []tortureCase {
	t.Helper()
	f, err := os.Open(filepath.Join(tortureDir, "INDEX.tsv"))
	if err != nil {
		t.Fatalf("torture corpus: %v", err)
	}
	defer f.Close()
	var cases []tortureCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		cols := strings.SplitN(sc.Text(), "\t", 3)
		if len(cols) != 3 || cols[0] == "name" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(tortureDir, cols[0]))
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tortureCase{strings.TrimSuffix(cols[0], ".dat"), cols[1], cols[2], data})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// tortureRejects names, for every invalid case, the status and reason
// phrase the parser answers with. A missing entry fails the test, so every
// case keeps a verdict.
var tortureRejects = map[string]struct {
	status int
	reason string
}{
	"badinv01":   {400, "Malformed Via"},
	"clerr":      {400, "Content-Length Exceeds Message"},
	"ncl":        {400, "Malformed Content-Length"},
	"scalar02":   {400, "Malformed CSeq"},
	"scalarlg":   {400, "Malformed CSeq"},
	"quotbal":    {400, "Malformed To"},
	"ltgtruri":   {400, "Malformed Request-URI"},
	"lwsruri":    {400, "Malformed Request-Line"},
	"lwsstart":   {400, "Malformed Request-Line"},
	"trws":       {400, "Malformed Request-Line"},
	"escruri":    {400, "Malformed Request-URI"},
	"regbadct":   {400, "Malformed Contact"},
	"badaspec":   {400, "Malformed To"},
	"baddn":      {400, "Malformed From"},
	"badvers":    {505, "Version Not Supported"},
	"mismatch01": {400, "CSeq Method Mismatch"},
	"mismatch02": {501, "Not Implemented"},
	"bigcode":    {400, "Malformed Status-Code"},
	"insuf":      {400, "Missing From Header"},
	"multi01":    {400, "Malformed CSeq"},
	"mcl01":      {400, "Malformed Content-Length"},
	"test":       {400, "Malformed Request-Line"},
	"ipv6-bad":   {400, "Malformed Request-URI"},
}

// tortureAccepted lists invalid cases that RFC 4475 lets an element accept
// when the fault does not matter to it, with the check that proves the fault
// is still caught where it does matter.
var tortureAccepted = map[string]func(t *testing.T, m Message){
	"baddate": func(t *testing.T, m Message) {
		if _, ok, err := m.Header().Date(); !ok || err == nil {
			t.Errorf("Date() = ok %v, err %v; want a malformed Date error", ok, err)
		}
	},
}

func TestTorture(t *testing.T) {
	cases := loadTorture(t)
	if len(cases) < 60 {
		t.Fatalf("corpus has %d cases, want at least 60", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseDatagram(tc.data)
			switch {
			case tc.validity == "valid":
				if err != nil {
					t.Fatalf("valid message rejected: %v", err)
				}
				checkRoundTrip(t, tc, m)
				check, ok := tortureChecks[tc.name]
				if !ok {
					t.Fatalf("no field checks for valid case %s", tc.name)
				}
				check(t, m)
			case tortureAccepted[tc.name] != nil:
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				tortureAccepted[tc.name](t, m)
			default:
				want, ok := tortureRejects[tc.name]
				if !ok {
					t.Fatalf("no verdict for invalid case %s (%s)", tc.name, tc.expected)
				}
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("got %v, want a *ParseError %d %s", err, want.status, want.reason)
				}
				if pe.Status != want.status || pe.Reason != want.reason {
					t.Fatalf("got %d %q, want %d %q", pe.Status, pe.Reason, want.status, want.reason)
				}
			}
		})
	}
}

// checkRoundTrip: an unchanged message serialises byte for byte as it came
// (less octets past Content-Length in a datagram) and parses to the same.
func checkRoundTrip(t *testing.T, tc tortureCase, m Message) {
	t.Helper()
	out := m.AppendTo(nil)
	if !bytes.HasPrefix(tc.data, out) {
		t.Errorf("serialised form differs from input:\n got %q\nwant %q", out, tc.data)
	}
	again, err := ParseDatagram(out)
	if err != nil {
		t.Fatalf("re-parse: %v", err)
	}
	if got := again.AppendTo(nil); !bytes.Equal(got, out) {
		t.Errorf("second round trip differs:\n got %q\nwant %q", got, out)
	}
}

func req(t *testing.T, m Message) *Request {
	t.Helper()
	r, ok := m.(*Request)
	if !ok {
		t.Fatalf("got %T, want *Request", m)
	}
	return r
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func contacts(t *testing.T, m Message) []Address {
	t.Helper()
	cs, err := m.Header().Contacts()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// tortureChecks asserts the fields that RFC 4475 and RFC 5118 call out.
var tortureChecks = map[string]func(t *testing.T, m Message){
	"wsinv": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "method", r.Method, "INVITE")
		eq(t, "To tag", r.To().Tag(), "1918181833n")
		eq(t, "From display", r.From().Display, `J Rosenberg \"`)
		eq(t, "From tag", r.From().Tag(), "98asjd8")
		mf, _ := r.MaxForwards()
		eq(t, "Max-Forwards", mf, 68)
		eq(t, "CSeq", r.CSeq(), CSeq{9, "INVITE"})
		vias := r.Via()
		eq(t, "vias", len(vias), 3)
		eq(t, "via[0] branch", vias[0].Branch(), "390skdjuw")
		eq(t, "via[1] transport", vias[1].Transport, "TCP")
		eq(t, "via[1] host", vias[1].Host, "spindle.example.com")
		eq(t, "via[1] branch", vias[1].Branch(), "z9hG4bK9ikj8")
		eq(t, "via[2] branch", vias[2].Branch(), "z9hG4bK30239")
		eq(t, "unusual header", r.Get("UnknownHeaderWithUnusualValue"), ";;,,;;,;")
		eq(t, "Subject present", r.Has("Subject"), true)
		eq(t, "Subject", r.Get("subject"), "")
		eq(t, "NewFangledHeader", r.Get("newfangledheader"), "newfangled value continued newfangled value")
		c := contacts(t, m)
		eq(t, "contacts", len(c), 1)
		eq(t, "contact display", c[0].Display, `Quoted string ""`)
		q, _ := c[0].Params.Get("q")
		eq(t, "contact q", q, "0.33")
		eq(t, "contact newparam", c[0].Params.Has("newparam"), true)
		eq(t, "body", len(r.Body), 150)
		routes, err := r.Routes()
		if err != nil || len(routes) != 1 || !routes[0].URI.Params.Has("lr") {
			t.Errorf("routes = %v, %v", routes, err)
		}
	},
	"intmeth": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "method", r.Method, "!interesting-Method0123456789_*+`.%indeed'~")
		eq(t, "known", IsKnownMethod(r.Method), false)
		eq(t, "user", r.URI.User, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
		eq(t, "password", r.URI.Password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
		eq(t, "host", r.URI.Host, "example.com")
		eq(t, "To display", r.To().Display, "BEL:\x07 NUL:\x00 DEL:\x7f")
		eq(t, "To user", r.To().URI.User, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
		eq(t, "From display", r.From().Display, "token1~` token2'+_ token3*%!.-")
		eq(t, "From tag", r.From().Tag(), "_token~1'+`*%!-.")
		eq(t, "Call-ID", r.CallID(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
		eq(t, "branch", r.Via()[0].Branch(), "z9hG4bK-.!%66*_+`'~")
	},
	"esc01": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "user", r.URI.User, "sips:user@example.com")
		eq(t, "host", r.URI.Host, "example.net")
		eq(t, "To user", r.To().URI.User, "user")
		eq(t, "From user", r.From().URI.User, "I have spaces")
		c := contacts(t, m)
		eq(t, "contact user", c[0].URI.User, "caller")
		want, _ := ParseURI("sip:caller@host5.example.net;lr;name=value%2541")
		if !c[0].URI.Equal(&want) {
			t.Errorf("contact %v not equal to %v", c[0].URI.String(), want.String())
		}
		notWant, _ := ParseURI("sip:caller@host5.example.net;lr;name=valueA")
		if c[0].URI.Equal(&notWant) {
			t.Error("escapes decoded twice")
		}
	},
	"escnull": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "To user", r.To().URI.User, "null-\x00-null")
		c := contacts(t, m)
		eq(t, "contacts", len(c), 2)
		eq(t, "contact 0", c[0].URI.User, "\x00")
		eq(t, "contact 1", c[1].URI.User, "\x00\x00")
		eq(t, "distinct", c[0].URI.Equal(&c[1].URI), false)
	},
	"esc02": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "method", r.Method, "RE%47IST%45R")
		eq(t, "known", IsKnownMethod(r.Method), false)
		eq(t, "From display", r.From().Display, "%Z%45")
		eq(t, "contacts", len(contacts(t, m)), 2)
		eq(t, "C%6Fntact kept", r.Get("C%6Fntact"), "<sip:alias2@host2.example.com>")
		eq(t, "branch", r.Via()[0].Branch(), "z9hG4bK209%fzsnel234")
	},
	"lwsdisp": func(t *testing.T, m Message) {
		eq(t, "From display", m.Header().From().Display, "caller")
		eq(t, "From tag", m.Header().From().Tag(), "323")
	},
	"longreq": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "vias", len(r.Via()), 34)
		if len(r.From().URI.User) < 100 || len(r.From().Tag()) < 50 || len(r.CallID()) < 100 {
			t.Errorf("long values truncated: From %q, Call-ID %q", r.Get("From"), r.CallID())
		}
		if len(r.To().Display) < 100 {
			t.Errorf("To display = %q", r.To().Display)
		}
	},
	"dblreq": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "method", r.Method, "REGISTER")
		eq(t, "body", len(r.Body), 0)
		if bytes.Contains(r.AppendTo(nil), []byte("INVITE")) {
			t.Error("trailing octets kept")
		}
	},
	"semiuri": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "user", r.URI.User, "user;par=u@example.net")
		eq(t, "host", r.URI.Host, "example.com")
		eq(t, "params", r.URI.Params, Params(""))
		eq(t, "Accept", len(r.Tokens("Accept")), 6)
	},
	"transports": func(t *testing.T, m Message) {
		var got []string
		for _, v := range m.Header().Via() {
			got = append(got, v.Transport)
		}
		eq(t, "transports", strings.Join(got, ","), "UDP,SCTP,TLS,UNKNOWN,TCP")
	},
	"mpart01": func(t *testing.T, m Message) {
		cl, _ := m.Header().ContentLength()
		eq(t, "body", len(m.Payload()), cl)
		if !bytes.Contains(m.Payload(), []byte{0}) {
			t.Error("binary body part lost")
		}
	},
	"unreason": func(t *testing.T, m Message) {
		r := m.(*Response)
		eq(t, "code", r.StatusCode, 200)
		if !strings.Contains(r.Reason, "=") || len(r.Reason) < 30 {
			t.Errorf("reason = %q", r.Reason)
		}
	},
	"noreason": func(t *testing.T, m Message) {
		r := m.(*Response)
		eq(t, "code", r.StatusCode, 100)
		eq(t, "reason", r.Reason, "")
	},
	"badbranch": func(t *testing.T, m Message) {
		eq(t, "branch", m.Header().Via()[0].Branch(), BranchCookie)
	},
	"unkscm": func(t *testing.T, m Message) {
		eq(t, "scheme", req(t, m).URI.Scheme, "nobodyknowsthisscheme")
	},
	"novelsc": func(t *testing.T, m Message) {
		eq(t, "scheme", req(t, m).URI.Scheme, "soap.beep")
	},
	"unksm2": func(t *testing.T, m Message) {
		eq(t, "To scheme", m.Header().To().URI.Scheme, "isbn")
		eq(t, "From scheme", m.Header().From().URI.Scheme, "http")
		eq(t, "Contact scheme", contacts(t, m)[0].URI.Scheme, "name")
	},
	"bext01": func(t *testing.T, m Message) {
		eq(t, "Require", strings.Join(m.Header().Tokens("Require"), ","), "nothingSupportsThis,nothingSupportsThisEither")
		eq(t, "Proxy-Require", len(m.Header().Tokens("Proxy-Require")), 2)
	},
	"invut": func(t *testing.T, m Message) {
		eq(t, "Content-Type", m.Header().ContentType(), "application/unknownformat")
	},
	"regaut01": func(t *testing.T, m Message) {
		if !strings.HasPrefix(m.Header().Get("Authorization"), "NoOneKnowsThisScheme") {
			t.Errorf("Authorization = %q", m.Header().Get("Authorization"))
		}
	},
	"bcast": func(t *testing.T, m Message) {
		eq(t, "via[1] host", m.Header().Via()[1].Host, "255.255.255.255")
	},
	"zeromf": func(t *testing.T, m Message) {
		mf, ok := m.Header().MaxForwards()
		eq(t, "Max-Forwards present", ok, true)
		eq(t, "Max-Forwards", mf, 0)
	},
	"cparam01": func(t *testing.T, m Message) {
		c := contacts(t, m)[0]
		eq(t, "header param", c.Params.Has("unknownparam"), true)
		eq(t, "uri param", c.URI.Params.Has("unknownparam"), false)
	},
	"cparam02": func(t *testing.T, m Message) {
		c := contacts(t, m)[0]
		eq(t, "header param", c.Params.Has("unknownparam"), false)
		eq(t, "uri param", c.URI.Params.Has("unknownparam"), true)
	},
	"regescrt": func(t *testing.T, m Message) {
		eq(t, "uri headers", contacts(t, m)[0].URI.Headers, "Route=%3Csip:sip.example.com%3E")
	},
	"sdp01": func(t *testing.T, m Message) {
		eq(t, "Accept", m.Header().Get("Accept"), "text/nobodyKnowsThis")
	},
	"inv2543": func(t *testing.T, m Message) {
		r := req(t, m)
		_, hasCL := r.ContentLength()
		eq(t, "Content-Length present", hasCL, false)
		eq(t, "From tag", r.From().Tag(), "")
		eq(t, "branch", r.Via()[0].Branch(), "")
		if !bytes.HasPrefix(r.Body, []byte("v=0")) {
			t.Errorf("body = %q", r.Body)
		}
	},
	"ipv6-good": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "host", r.URI.Host, "2001:db8::10")
		eq(t, "port", r.URI.Port, 0)
	},
	"port-ambiguous": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "host", r.URI.Host, "2001:db8::10:5070")
		eq(t, "port", r.URI.Port, 0)
	},
	"port-unambiguous": func(t *testing.T, m Message) {
		r := req(t, m)
		eq(t, "host", r.URI.Host, "2001:db8::10")
		eq(t, "port", r.URI.Port, 5070)
	},
	"via-received-param-with-delim": func(t *testing.T, m Message) {
		v := m.Header().Via()[0]
		eq(t, "received", v.Received(), "[2001:db8::9:255]")
		if v.Branch() == "" {
			t.Error("branch lost")
		}
	},
	"via-received-param-no-delim": func(t *testing.T, m Message) {
		v := m.Header().Via()[0]
		eq(t, "received", v.Received(), "2001:db8::9:255")
		if v.Branch() == "" {
			t.Error("branch lost")
		}
	},
	"ipv6-in-sdp": func(t *testing.T, m Message) {
		if !bytes.Contains(m.Payload(), []byte("IN IP6 2001:db8::20")) {
			t.Errorf("body = %q", m.Payload())
		}
	},
	"mult-ip-in-header": func(t *testing.T, m Message) {
		vias := m.Header().Via()
		if len(vias) < 3 {
			t.Fatalf("vias = %d", len(vias))
		}
		eq(t, "via[0] host", vias[0].Host, "2001:db8::9:1")
		eq(t, "via[0] port", vias[0].Port, 6050)
		eq(t, "via[1] host", vias[1].Host, "192.0.2.1")
		last := vias[len(vias)-1]
		eq(t, "last via is IPv6", strings.Contains(last.Host, ":"), true)
		eq(t, "last via received", last.Received(), "192.0.2.200")
	},
	"mult-ip-in-sdp": func(t *testing.T, m Message) {
		if !bytes.Contains(m.Payload(), []byte("IN IP6")) || !bytes.Contains(m.Payload(), []byte("IN IP4")) {
			t.Errorf("body = %q", m.Payload())
		}
	},
	"ipv4-mapped-ipv6": func(t *testing.T, m Message) {
		v := m.Header().Via()[0]
		eq(t, "via host", v.Host, "::ffff:192.0.2.10")
		eq(t, "via port", v.Port, 19823)
	},
	"ipv6-bug-abnf-3-colons": func(t *testing.T, m Message) {
		eq(t, "host", req(t, m).URI.Host, "2001:db8:::192.0.2.1")
	},
	"ipv6-correct-abnf-2-colons": func(t *testing.T, m Message) {
		eq(t, "host", req(t, m).URI.Host, "2001:db8::192.0.2.1")
	},
}
