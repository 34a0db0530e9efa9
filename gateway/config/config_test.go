package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/trunk"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

func TestExampleFile(t *testing.T) {
	f, err := Load("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if f.Domain != (Domain{Name: "example.com"}) {
		t.Errorf("domain = %+v", f.Domain)
	}
	if len(f.Accounts) != 2 {
		t.Fatalf("accounts = %+v", f.Accounts)
	}
	// The example's HA1 values are alice's with the password "secret", as
	// its comment says.
	alice := Account{User: "alice", Realm: "example.com",
		HA1MD5:    digest.HA1("MD5", "alice", "example.com", "secret"),
		HA1SHA256: digest.HA1("SHA-256", "alice", "example.com", "secret")}
	if f.Accounts[0] != alice {
		t.Errorf("alice = %+v, want %+v", f.Accounts[0], alice)
	}
	want := Account{
		User:      "1000",
		Realm:     "example.com",
		HA1MD5:    digest.HA1("MD5", "1000", "example.com", "change-me"),
		HA1SHA256: digest.HA1("SHA-256", "1000", "example.com", "change-me"),
	}
	if f.Accounts[1] != want {
		t.Errorf("account from password = %+v, want %+v", f.Accounts[1], want)
	}
	if len(f.Trunks) != 2 {
		t.Fatalf("trunks = %+v", f.Trunks)
	}
	vc := f.Trunks[0]
	wantTrunk := trunk.Trunk{
		Name: "voipco", Host: "sip.voipco.example", Port: 5060, Transport: sip.UDP,
		Username: "acct-4711", Password: "provider-secret",
		Register: true, RegisterExpires: 10 * time.Minute,
		FromUser: "acct-4711", FromDomain: "voipco.example", ContactUser: "acct-4711",
		TrustedSources: []netip.Prefix{
			netip.MustParsePrefix("203.0.113.0/24"),
			netip.MustParsePrefix("198.51.100.7/32"),
			netip.MustParsePrefix("2001:db8:5::/48"),
		},
		DIDs: []trunk.DID{{Number: "+15551230001", User: "alice"}, {Number: "+15551230002", User: "1000"}},
	}
	if !reflect.DeepEqual(vc, wantTrunk) {
		t.Errorf("trunk =\n%#v\nwant\n%#v", vc, wantTrunk)
	}
	pbx := f.Trunks[1]
	if pbx.Transport != sip.TLS || pbx.Port != 0 || pbx.Register || pbx.FromDomain != "pbx.office.example" {
		t.Errorf("pbx trunk = %+v", pbx)
	}
	if len(f.Routes) != 3 || f.Routes[0] != (trunk.Route{Pattern: `9(\d{10})`, Strip: 1, Prefix: "+1", Trunk: "voipco"}) {
		t.Errorf("routes = %+v", f.Routes)
	}
}

// The password of an account is hashed and kept nowhere in the File, and
// a trunk's is not logged.
func TestSecretsNotKept(t *testing.T) {
	f, err := Parse([]byte(`
[domain]
name = "example.com"
[[account]]
user = "bob"
password = "hunter2-account"
[[trunk]]
name = "t"
host = "192.0.2.1"
username = "u"
password = "hunter2-trunk"
`))
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%#v", f.Accounts); strings.Contains(s, "hunter2") {
		t.Errorf("account keeps its password: %s", s)
	}
	if s := fmt.Sprintf("%v %+v %s", f.Trunks[0], f.Trunks, f.Trunks[0]); strings.Contains(s, "hunter2") {
		t.Errorf("printing a trunk shows its password: %s", s)
	}
	if s := f.Trunks[0].String(); s != "trunk t (UDP 192.0.2.1)" {
		t.Errorf("String() = %s", s)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "trunk", f.Trunks[0], "account", f.Accounts[0])
	if strings.Contains(b.String(), "hunter2") || strings.Contains(b.String(), f.Accounts[0].HA1MD5) {
		t.Errorf("log shows a secret: %s", b.String())
	}
	if !strings.Contains(b.String(), "trunk.name=t") || !strings.Contains(b.String(), "account=bob@example.com") {
		t.Errorf("log = %s", b.String())
	}
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		file  string
		check func(t *testing.T, f *File)
	}{
		{"empty", Options{}, ``, func(t *testing.T, f *File) {
			if !reflect.DeepEqual(f, &File{}) {
				t.Errorf("got %+v", f)
			}
		}},
		{"domain from options", Options{Domain: "sb.example"}, `
[[account]]
user = "a"
password = "p"`, func(t *testing.T, f *File) {
			if f.Domain.Name != "sb.example" || f.Accounts[0].Realm != "sb.example" ||
				f.Accounts[0].HA1MD5 != digest.HA1("MD5", "a", "sb.example", "p") {
				t.Errorf("got %+v", f)
			}
		}},
		{"domain in file and options agree", Options{Domain: "SB.example"}, `
[domain]
name = "sb.example"
redirect = true`, func(t *testing.T, f *File) {
			if f.Domain != (Domain{Name: "sb.example", Redirect: true}) {
				t.Errorf("got %+v", f.Domain)
			}
		}},
		{"ha1 uppercase, md5 only", Options{}, `
[[account]]
user = "a"
ha1_md5 = "0123456789ABCDEF0123456789abcdef"`, func(t *testing.T, f *File) {
			if a := f.Accounts[0]; a.HA1MD5 != "0123456789abcdef0123456789abcdef" || a.HA1SHA256 != "" {
				t.Errorf("got %+v", a)
			}
		}},
		{"trunk defaults", Options{}, `
[[trunk]]
name = "t"
host = "[2001:db8::1]"
username = "acc"
register = true`, func(t *testing.T, f *File) {
			tr := f.Trunks[0]
			want := trunk.Trunk{Name: "t", Host: "2001:db8::1", Transport: sip.UDP, Username: "acc", Register: true,
				RegisterExpires: trunk.DefaultRegisterExpires, FromUser: "acc", FromDomain: "2001:db8::1", ContactUser: "acc"}
			if !reflect.DeepEqual(tr, want) {
				t.Errorf("got %+v\nwant %+v", tr, want)
			}
		}},
		{"contact user defaults to from user", Options{}, `
[[trunk]]
name = "t"
host = "h.example"
transport = "TCP"
username = "acc"
from_user = "+15550001"`, func(t *testing.T, f *File) {
			if tr := f.Trunks[0]; tr.ContactUser != "+15550001" || tr.Transport != sip.TCP {
				t.Errorf("got %+v", tr)
			}
		}},
		{"trunk codecs", Options{}, `
[[trunk]]
name = "t"
host = "h.example"
codecs = ["PCMA", "h264", "G722/8000"]`, func(t *testing.T, f *File) {
			got := trunk.CodecNames(f.Trunks[0].Codecs)
			want := []string{"PCMA/8000", "H264/90000", "G722/8000", "telephone-event/8000"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("codecs %q, want %q", got, want)
			}
		}},
		{"same DID on two trunks, same user", Options{}, `
[[trunk]]
name = "a"
host = "a.example"
[trunk.did]
"+1 555 000 1" = "u"
[[trunk]]
name = "b"
host = "b.example"
did = { "15550001" = "u" }`, func(t *testing.T, f *File) {
			if len(f.Trunks[0].DIDs) != 1 || len(f.Trunks[1].DIDs) != 1 {
				t.Errorf("got %+v", f.Trunks)
			}
		}},
		{"inline tables", Options{}, `
trunk = [{ name = "a", host = "a.example" }]
route = [{ pattern = '\d+', trunk = "a" }]`, func(t *testing.T, f *File) {
			if len(f.Trunks) != 1 || len(f.Routes) != 1 {
				t.Errorf("got %+v", f)
			}
		}},
		{"ipv4-mapped source unmapped", Options{}, `
[[trunk]]
name = "a"
host = "a.example"
trusted_sources = ["::ffff:192.0.2.1"]`, func(t *testing.T, f *File) {
			if got := f.Trunks[0].TrustedSources; len(got) != 1 || got[0] != netip.MustParsePrefix("192.0.2.1/32") {
				t.Errorf("got %v", got)
			}
		}},
		{"weight", Options{}, `
[[trunk]]
name = "a"
host = "a.example"
weight = 50
[[trunk]]
name = "b"
host = "b.example"`, func(t *testing.T, f *File) {
			if f.Trunks[0].Weight != 50 || f.Trunks[1].Weight != 0 {
				t.Errorf("weights %d and %d, want 50 and 0 (the default)", f.Trunks[0].Weight, f.Trunks[1].Weight)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := tt.opts.Parse([]byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, f)
		})
	}
}

const goodTrunk = `
[[trunk]]
name = "t"
host = "sip.example"
`

func TestParseBad(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		file string
		line int    // of the problem; 0: unknown
		want string // in its message
	}{
		{"syntax", Options{}, "[[trunk]\nname = \"a\"", 1, "expected ']]'"},
		{"unknown top-level key", Options{}, "trunks = 1", 1, `unknown key "trunks" (did you mean "trunk"?)`},
		{"unknown table", Options{}, "\n[domian]\nname = \"x\"", 2, `unknown key "domian" (did you mean "domain"?)`},
		{"unknown trunk key", Options{}, goodTrunk + "hots = \"x\"\n", 5, `unknown key "trunk.hots" (did you mean "host"?)`},
		{"dashed key", Options{}, goodTrunk + "register-expires = 60\n", 5, `(did you mean "register_expires"?)`},
		{"no suggestion", Options{}, goodTrunk + "colour = \"blue\"\n", 5, `unknown key "trunk.colour"`},
		{"wrong type", Options{}, goodTrunk + "port = \"5060\"\n", 5, "trunk.port: expected an integer, found a TOML string"},
		{"wrong type bool", Options{}, goodTrunk + "register = \"yes\"\n", 5, "trunk.register: expected true or false"},
		{"wrong type list", Options{}, goodTrunk + "codecs = \"PCMU\"\n", 5, "trunk.codecs: expected a list"},
		{"trunk as table", Options{}, "[trunk]\nname = \"t\"\n", 1, `trunk "t" has no host`},
		{"route as value", Options{}, "route = 1", 1, "route: expected tables"},
		{"duplicate key", Options{}, goodTrunk + "name = \"u\"\n", 5, "already defined"},

		{"domain not a host", Options{}, "[domain]\nname = \"a b\"", 2, "not a host name"},
		{"domain mismatch", Options{Domain: "b.example"}, "[domain]\nname = \"a.example\"", 2, `SWITCHBOARD_DOMAIN`},

		{"account without user", Options{}, "[[account]]\npassword = \"x\"", 1, "account #1 has no user"},
		{"account bad user", Options{}, "[[account]]\nuser = \"a b\"\nha1_md5 = \"0123456789abcdef0123456789abcdef\"", 2, "a user may hold only"},
		{"account twice", Options{Domain: "x"}, "[[account]]\nuser = \"a\"\npassword = \"p\"\n[[account]]\nuser = \"a\"\npassword = \"p\"", 5, `account "a" is defined twice`},
		{"account no credentials", Options{}, "[[account]]\nuser = \"a\"", 1, "has no credentials"},
		{"account both", Options{Domain: "x"}, "[[account]]\nuser = \"a\"\npassword = \"p\"\nha1_md5 = \"0123456789abcdef0123456789abcdef\"", 3, "both a password and HA1"},
		{"account password no realm", Options{}, "[[account]]\nuser = \"a\"\npassword = \"p\"", 3, "realm, which is unknown"},
		{"account bad md5", Options{}, "[[account]]\nuser = \"a\"\nha1_md5 = \"xyz\"", 3, "ha1_md5 must be 32 hex digits"},
		{"account bad sha256", Options{}, "[[account]]\nuser = \"a\"\nha1_sha256 = \"0123456789abcdef0123456789abcdef\"", 3, "ha1_sha256 must be 64 hex digits"},
		{"account control char", Options{Domain: "x"}, "[[account]]\nuser = \"a\"\npassword = \"p\\n\"", 3, "control characters"},

		{"trunk no name", Options{}, "[[trunk]]\nhost = \"h\"", 1, "trunk #1 has no name"},
		{"trunk bad name", Options{}, "[[trunk]]\nname = \"a b\"\nhost = \"h\"", 2, "a name may hold only"},
		{"trunk twice", Options{}, goodTrunk + goodTrunk, 7, `trunk "t" is defined twice`},
		{"trunk no host", Options{}, "[[trunk]]\nname = \"t\"", 1, `trunk "t" has no host`},
		{"trunk host uri", Options{}, "[[trunk]]\nname = \"t\"\nhost = \"sip:h.example\"", 3, "is a URI"},
		{"trunk host port", Options{}, "[[trunk]]\nname = \"t\"\nhost = \"h.example:5080\"", 3, `write host = "h.example" and port = 5080`},
		{"trunk host junk", Options{}, "[[trunk]]\nname = \"t\"\nhost = \"h/x\"", 3, "not a host name or IP address"},
		{"trunk port", Options{}, goodTrunk + "port = 70000", 5, "port 70000 is out of range"},
		{"trunk transport", Options{}, goodTrunk + "transport = \"sctp\"", 5, `transport "sctp" is not one of udp, tcp, tls`},
		{"trunk password no user", Options{}, goodTrunk + "password = \"p\"", 5, "has a password but no username"},
		{"trunk bad from_user", Options{}, goodTrunk + "from_user = \"a b\"", 5, `from_user "a b" may hold only`},
		{"trunk bad from_domain", Options{}, goodTrunk + "from_domain = \"a b\"", 5, "from_domain \"a b\" is not a host name"},
		{"trunk expires low", Options{}, goodTrunk + "register_expires = 10", 5, "register_expires 10 is out of range"},
		{"trunk register no user", Options{}, goodTrunk + "register = true", 5, "registers but has no username"},
		{"trunk weight", Options{}, goodTrunk + "weight = 1001", 5, "weight 1001 is out of range: use 1 to 1000"},
		{"trunk weight negative", Options{}, goodTrunk + "weight = -1", 5, "weight -1 is out of range"},
		{"trunk source", Options{}, goodTrunk + "trusted_sources = [\"10.0.0.0/8\", \"bogus\"]", 5, `entry 2: "bogus" is not an IP address`},
		{"trunk source host bits", Options{}, goodTrunk + "trusted_sources = [\"203.0.113.5/24\"]", 5, `did you mean "203.0.113.0/24"?`},
		{"trunk source bad prefix", Options{}, goodTrunk + "trusted_sources = [\"203.0.113.0/33\"]", 5, `not a CIDR prefix`},
		{"trunk did not a number", Options{}, goodTrunk + "[trunk.did]\n\"alice\" = \"alice\"", 6, `DID "alice" is not a phone number`},
		{"trunk did no user", Options{}, goodTrunk + "[trunk.did]\n\"123\" = \"\"", 6, `DID "123" maps to no user`},
		{"trunk did bad user", Options{}, goodTrunk + "[trunk.did]\n\"123\" = \"a b\"", 6, `which is not a valid user`},
		{"trunk did conflict", Options{}, goodTrunk + "[trunk.did]\n\"+1555\" = \"a\"\n\"1555\" = \"b\"", 7, `DID "1555" maps to "b", but trunk "t" maps it to "a"`},
		{"trunk codecs unknown", Options{}, goodTrunk + "codecs = [\"PCMA\", \"G729\"]", 5, `trunk "t": codecs: codec "G729": unknown codec: the gateway relays, never transcodes, so only formats browsers speak can pass: opus, G722, PCMU, PCMA, VP8, H264 (and telephone-event)`},
		{"trunk codecs rate", Options{}, goodTrunk + "codecs = [\"opus/8000\"]", 5, `codec "opus/8000": unknown codec at that rate: the gateway relays opus/48000/2`},
		{"trunk codecs empty", Options{}, goodTrunk + "codecs = []", 5, `trunk "t": codecs: the list is empty: leave codecs out for the gateway's codecs`},
		{"trunk codecs video only", Options{}, goodTrunk + "codecs = [\"VP8\"]", 5, `no audio codec among VP8`},
		{"trunk codecs twice", Options{}, goodTrunk + "codecs = [\"PCMU\", \"pcmu/8000\"]", 5, `codec "pcmu/8000" is listed twice`},

		{"route no pattern", Options{}, goodTrunk + "[[route]]\ntrunk = \"t\"", 5, "route #1 has no pattern"},
		{"route bad pattern", Options{}, goodTrunk + "[[route]]\npattern = '9(\\d+'\ntrunk = \"t\"", 6, "missing closing )"},
		{"route escaping pattern", Options{}, goodTrunk + "[[route]]\npattern = 'a)|(b'\ntrunk = \"t\"", 6, "not a valid regular expression"},
		{"route strip", Options{}, goodTrunk + "[[route]]\npattern = '9'\nstrip = -1\ntrunk = \"t\"", 7, "strip must not be negative"},
		{"route prefix", Options{}, goodTrunk + "[[route]]\npattern = '9'\nprefix = \"1+\"\ntrunk = \"t\"", 7, `prefix "1+" may hold only digits`},
		{"route no trunk", Options{}, goodTrunk + "[[route]]\npattern = '9'", 5, "route #1 has no trunk"},
		{"route unknown trunk", Options{}, goodTrunk + "[[route]]\npattern = '9'\ntrunk = \"u\"", 7, `trunk "u" is not defined`},
		{"route in inline table", Options{}, "route = [{ pattern = '9', trunk = \"u\" }]", 1, `trunk "u" is not defined`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := tt.opts.Parse([]byte(tt.file))
			if err == nil {
				t.Fatalf("no error; got %+v", f)
			}
			if f != nil {
				t.Errorf("file returned with an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error", err)
			}
			for _, p := range e.Problems {
				if strings.Contains(p.Msg, tt.want) && p.Line == tt.line {
					return
				}
			}
			t.Errorf("no problem at line %d saying %q in:\n%v", tt.line, tt.want, err)
		})
	}
}

// One run reports every problem, unknown keys included, in line order.
func TestAllProblemsAtOnce(t *testing.T) {
	_, err := Parse([]byte(`[[trunk]]
name = "a"
hots = "x"
transport = "sctp"

[[route]]
pattern = '9'
trunk = "b"

[[account]]
user = "c"
`))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v", err)
	}
	var got []string
	for _, p := range e.Problems {
		got = append(got, fmt.Sprintf("%d:%s", p.Line, p.Key))
	}
	want := []string{"1:trunk.host", "3:trunk.hots", "4:trunk.transport", "8:route.trunk", "10:account.password"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems = %v, want %v\n%v", got, want, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "invalid config file:\n  line 1: ") || strings.Count(msg, "\n  line") != 5 {
		t.Errorf("message:\n%s", msg)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("x = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(bad)
	if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), bad+": invalid config file: line 1, column 1: unknown key \"x\"") {
		t.Errorf("Load(bad) = %v", err)
	}

	_, err = Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("Load(missing) = %v", err)
	}

	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = Load(big); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}

	f, err := Options{Domain: "example.com"}.Load("example.toml")
	if err != nil || f.Domain.Name != "example.com" {
		t.Errorf("Load(example) = %v, %v", f, err)
	}
	if _, err := (Options{Domain: "other.example"}).Load("example.toml"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(example) for another domain = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(goodTrunk + "[trunk.did]\n\"+1\" = \"a\"\n[[route]]\npattern = '1'\ntrunk = \"t\""))
	f.Add([]byte("trunk = [{ name = \"a\", host = \"h\" }]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Options{Domain: "example.com"}.Parse(data)
		if (file == nil) == (err == nil) {
			t.Fatalf("file %v, err %v", file, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			_ = err.Error()
			return
		}
		for _, r := range file.Routes {
			if _, err := r.Regexp(); err != nil {
				t.Fatalf("valid file with a bad route: %v", err)
			}
		}
	})
}
