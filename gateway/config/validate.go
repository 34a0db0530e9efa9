package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/switchboard/switchboard/gateway/trunk"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// Registration lifetimes accepted in register_expires.
const (
	MinRegisterExpires = time.Minute
	MaxRegisterExpires = 24 * time.Hour
)

// validator collects problems, locating them with the file's key lines.
type validator struct {
	lines    lines
	problems []*Problem
}

// add records a problem about the key at path (see lines) named key for
// the reader.
func (v *validator) add(path, key, format string, args ...any) {
	v.problems = append(v.problems, &Problem{Line: v.lines.at(path), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) file(raw *rawFile, o Options) *File {
	f := &File{Domain: v.domain(&raw.Domain, o)}
	f.Accounts = v.accounts(raw.Account, f.Domain.Name)
	f.Trunks = v.trunks(raw.Trunk)
	f.Routes = v.routes(raw.Route, f.Trunks)
	return f
}

func (v *validator) domain(raw *rawDomain, o Options) Domain {
	d := Domain{Name: raw.Name, Redirect: raw.Redirect}
	switch {
	case d.Name == "":
		d.Name = o.Domain
	case !validHost(d.Name):
		v.add("domain.name", "domain.name", "[domain] name %q is not a host name: write the SIP domain, e.g. \"example.com\"", d.Name)
	case o.Domain != "" && !strings.EqualFold(d.Name, o.Domain):
		v.add("domain.name", "domain.name", "[domain] name is %q but the gateway serves %q (SWITCHBOARD_DOMAIN): make them the same, or remove the name", d.Name, o.Domain)
	}
	return d
}

func (v *validator) accounts(raw []rawAccount, realm string) []Account {
	var out []Account
	seen := make(map[string]bool)
	for i, a := range raw {
		path := "account#" + strconv.Itoa(i)
		what := fmt.Sprintf("account %q", a.User)
		ok := true
		switch {
		case a.User == "":
			v.add(path, "account.user", "account #%d has no user: add user = \"name\"", i+1)
			ok = false
		case !validUser(a.User):
			v.add(path+".user", "account.user", "%s: a user may hold only letters, digits and -_.!~*'()&=+$;?/", what)
			ok = false
		case seen[a.User]:
			v.add(path+".user", "account.user", "%s is defined twice", what)
			ok = false
		}
		seen[a.User] = true
		acc := Account{User: a.User, Realm: realm, HA1MD5: strings.ToLower(a.HA1MD5), HA1SHA256: strings.ToLower(a.HA1SHA256)}
		hasHA1 := a.HA1MD5 != "" || a.HA1SHA256 != ""
		switch {
		case a.Password != "" && hasHA1:
			v.add(path+".password", "account.password", "%s has both a password and HA1 values: keep one (HA1 values are better)", what)
			ok = false
		case a.Password != "":
			if strings.ContainsFunc(a.Password, isControl) {
				v.add(path+".password", "account.password", "%s: the password contains control characters", what)
				ok = false
			} else if realm == "" {
				v.add(path+".password", "account.password", "%s: a password is hashed for the realm, which is unknown: set name in [domain] (or SWITCHBOARD_DOMAIN), or write ha1_md5 and ha1_sha256 instead", what)
				ok = false
			} else {
				acc.HA1MD5 = digest.HA1("MD5", a.User, realm, a.Password)
				acc.HA1SHA256 = digest.HA1("SHA-256", a.User, realm, a.Password)
			}
		case !hasHA1:
			v.add(path, "account.password", "%s has no credentials: add ha1_md5 and ha1_sha256 (or password)", what)
			ok = false
		default:
			if acc.HA1MD5 != "" && !isHex(acc.HA1MD5, 32) {
				v.add(path+".ha1_md5", "account.ha1_md5", "%s: ha1_md5 must be 32 hex digits, MD5(user:realm:password)", what)
				ok = false
			}
			if acc.HA1SHA256 != "" && !isHex(acc.HA1SHA256, 64) {
				v.add(path+".ha1_sha256", "account.ha1_sha256", "%s: ha1_sha256 must be 64 hex digits, SHA-256(user:realm:password)", what)
				ok = false
			}
		}
		if ok {
			out = append(out, acc)
		}
	}
	return out
}

func (v *validator) trunks(raw []rawTrunk) []trunk.Trunk {
	var out []trunk.Trunk
	names := make(map[string]bool)
	type owner struct{ trunk, user string }
	dids := make(map[string]owner) // by normalized number
	for i := range raw {
		r := &raw[i]
		path := "trunk#" + strconv.Itoa(i)
		what := fmt.Sprintf("trunk %q", r.Name)
		t := trunk.Trunk{
			Name:        r.Name,
			Host:        strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]"),
			Port:        r.Port,
			Username:    r.Username,
			Password:    r.Password,
			Register:    r.Register,
			FromUser:    cmpOr(r.FromUser, r.Username),
			FromDomain:  cmpOr(r.FromDomain, strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]")),
			ContactUser: cmpOr(r.ContactUser, r.FromUser, r.Username),
		}
		switch {
		case r.Name == "":
			v.add(path, "trunk.name", "trunk #%d has no name: add name = \"provider\"", i+1)
			what = fmt.Sprintf("trunk #%d", i+1)
		case !validName(r.Name):
			v.add(path+".name", "trunk.name", "%s: a name may hold only letters, digits, '-', '_' and '.'", what)
		case names[r.Name]:
			v.add(path+".name", "trunk.name", "%s is defined twice", what)
		}
		names[r.Name] = true

		switch {
		case r.Host == "":
			v.add(path, "trunk.host", "%s has no host: add host = \"sip.provider.example\"", what)
		case strings.Contains(r.Host, "://") || strings.HasPrefix(strings.ToLower(r.Host), "sip:") || strings.HasPrefix(strings.ToLower(r.Host), "sips:"):
			v.add(path+".host", "trunk.host", "%s: host %q is a URI: write the host name alone, e.g. \"sip.provider.example\"", what, r.Host)
		case !validHost(t.Host):
			if h, p, ok := strings.Cut(r.Host, ":"); ok && validHost(h) && !strings.Contains(p, ":") {
				v.add(path+".host", "trunk.host", "%s: host %q includes a port: write host = %q and port = %s", what, r.Host, h, p)
			} else {
				v.add(path+".host", "trunk.host", "%s: host %q is not a host name or IP address", what, r.Host)
			}
		}
		if r.Port < 0 || r.Port > 65535 {
			v.add(path+".port", "trunk.port", "%s: port %d is out of range: use 1-65535, or leave it out to use DNS SRV or the default", what, r.Port)
		}
		switch strings.ToLower(r.Transport) {
		case "", "udp":
			t.Transport = sip.UDP
		case "tcp":
			t.Transport = sip.TCP
		case "tls":
			t.Transport = sip.TLS
		default:
			v.add(path+".transport", "trunk.transport", "%s: transport %q is not one of udp, tcp, tls", what, r.Transport)
		}

		if r.Password != "" && r.Username == "" {
			v.add(path+".password", "trunk.username", "%s has a password but no username", what)
		}
		if strings.ContainsFunc(r.Password, isControl) {
			v.add(path+".password", "trunk.password", "%s: the password contains control characters", what)
		}
		for _, u := range []struct{ key, val string }{{"username", r.Username}, {"from_user", r.FromUser}, {"contact_user", r.ContactUser}} {
			if u.val != "" && !validUser(u.val) {
				v.add(path+"."+u.key, "trunk."+u.key, "%s: %s %q may hold only letters, digits and -_.!~*'()&=+$;?/", what, u.key, u.val)
			}
		}
		if r.FromDomain != "" && !validHost(r.FromDomain) {
			v.add(path+".from_domain", "trunk.from_domain", "%s: from_domain %q is not a host name", what, r.FromDomain)
		}
		expires := time.Duration(r.RegisterExpires) * time.Second
		switch {
		case r.RegisterExpires == 0:
			t.RegisterExpires = trunk.DefaultRegisterExpires
		case expires < MinRegisterExpires || expires > MaxRegisterExpires:
			v.add(path+".register_expires", "trunk.register_expires", "%s: register_expires %d is out of range: use %d to %d seconds", what, r.RegisterExpires, int(MinRegisterExpires.Seconds()), int(MaxRegisterExpires.Seconds()))
		default:
			t.RegisterExpires = expires
		}
		if r.Weight < 0 || r.Weight > trunk.MaxWeight {
			v.add(path+".weight", "trunk.weight", "%s: weight %d is out of range: use 1 to %d, or leave it out for %d", what, r.Weight, trunk.MaxWeight, trunk.DefaultWeight)
		} else {
			t.Weight = r.Weight
		}
		if r.Register && t.FromUser == "" {
			v.add(path+".register", "trunk.username", "%s registers but has no username (or from_user) to register as", what)
		}

		for j, s := range r.TrustedSources {
			p, err := parseSource(s)
			if err != nil {
				v.add(path+".trusted_sources", "trunk.trusted_sources", "%s: trusted_sources entry %d: %v", what, j+1, err)
				continue
			}
			t.TrustedSources = append(t.TrustedSources, p)
		}

		numbers := make([]string, 0, len(r.DID))
		for n := range r.DID {
			numbers = append(numbers, n)
		}
		slices.Sort(numbers)
		for _, n := range numbers {
			user := r.DID[n]
			key := path + ".did." + n
			norm, ok := trunk.NormalizeNumber(n)
			switch {
			case !ok:
				v.add(key, "trunk.did", "%s: DID %q is not a phone number: write digits, optionally with a leading '+'", what, n)
				continue
			case user == "":
				v.add(key, "trunk.did", "%s: DID %q maps to no user", what, n)
				continue
			case !validUser(user):
				v.add(key, "trunk.did", "%s: DID %q maps to %q, which is not a valid user", what, n, user)
				continue
			}
			// The same number on two trunks (a provider's failover pair)
			// is fine as long as it rings the same user.
			if prev, dup := dids[norm]; dup && prev.user != user {
				v.add(key, "trunk.did", "%s: DID %q maps to %q, but trunk %q maps it to %q", what, n, user, prev.trunk, prev.user)
				continue
			}
			dids[norm] = owner{r.Name, user}
			t.DIDs = append(t.DIDs, trunk.DID{Number: n, User: user})
		}

		if r.Codecs != nil {
			codecs, err := trunk.ParseCodecs(r.Codecs)
			if err != nil {
				v.add(path+".codecs", "trunk.codecs", "%s: codecs: %v", what, err)
			}
			t.Codecs = codecs
		}
		out = append(out, t)
	}
	return out
}

func (v *validator) routes(raw []rawRoute, trunks []trunk.Trunk) []trunk.Route {
	var out []trunk.Route
	for i, r := range raw {
		path := "route#" + strconv.Itoa(i)
		what := fmt.Sprintf("route #%d", i+1)
		route := trunk.Route(r)
		if r.Pattern == "" {
			v.add(path, "route.pattern", "%s has no pattern: add pattern = '9(\\d+)' (a regular expression matching the whole number)", what)
		} else if _, err := route.Regexp(); err != nil {
			v.add(path+".pattern", "route.pattern", "%s: pattern %q is not a valid regular expression: %v", what, r.Pattern, unwrapRegexpError(err))
		}
		if r.Strip < 0 {
			v.add(path+".strip", "route.strip", "%s: strip must not be negative", what)
		}
		if strings.Trim(r.Prefix, "0123456789+*#") != "" || strings.LastIndexByte(r.Prefix, '+') > 0 {
			v.add(path+".prefix", "route.prefix", "%s: prefix %q may hold only digits, * and #, and a leading '+'", what, r.Prefix)
		}
		switch {
		case r.Trunk == "":
			v.add(path, "route.trunk", "%s has no trunk: add trunk = \"name of a [[trunk]]\"", what)
		case !slices.ContainsFunc(trunks, func(t trunk.Trunk) bool { return t.Name == r.Trunk }):
			v.add(path+".trunk", "route.trunk", "%s: trunk %q is not defined in a [[trunk]]", what, r.Trunk)
		}
		out = append(out, route)
	}
	return out
}

// parseSource parses a trusted source: a CIDR prefix or a single address.
func parseSource(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR prefix such as \"203.0.113.0/24\"", s)
		}
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix such as \"203.0.113.0/24\"", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped prefix: write the IPv4 prefix", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %q?", s, m.String())
	}
	return p, nil
}

// unknownKey turns go-toml's report of an unknown key into a problem,
// suggesting the known key it is closest to.
func unknownKey(e *toml.DecodeError) *Problem {
	row, col := e.Position()
	key := []string(e.Key())
	name := strings.Join(key, ".")
	msg := fmt.Sprintf("unknown key %q", name)
	if s := suggest(key); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return &Problem{Line: row, Column: col, Key: name, Msg: msg}
}

// decodeProblem turns a syntax or type error into a problem, rephrasing
// go-toml's messages about Go types in the file's terms.
func decodeProblem(e *toml.DecodeError) *Problem {
	row, col := e.Position()
	key := strings.Join(e.Key(), ".")
	orig := strings.TrimPrefix(e.Error(), "toml: ")
	msg := orig
	if m := typeErr.FindStringSubmatch(orig); m != nil {
		msg = fmt.Sprintf("expected %s, found a TOML %s", goTypeName(m[2]), m[1])
		if key != "" {
			msg = key + ": " + msg
		}
	}
	// The excerpt ends with the parser's message under the fault; say it
	// in the file's terms there too.
	ex := strings.Replace(strings.TrimRight(e.String(), "\n"), orig, msg, 1)
	return &Problem{Line: row, Column: col, Key: key, Msg: msg, Excerpt: ex}
}

var typeErr = regexp.MustCompile(`^cannot decode TOML (\w+) into (?:struct field \S+ of type )?(\S+)$`)

// goTypeName names a Go type as a configuration value.
func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]config.raw"):
		return "tables ([[" + "...]])"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "config.raw"):
		return "a table"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	}
	return t
}

// knownKeys lists the keys of each table, from the raw types' tags.
var knownKeys = map[string][]string{
	"":        tags(rawFile{}),
	"domain":  tags(rawDomain{}),
	"account": tags(rawAccount{}),
	"trunk":   tags(rawTrunk{}),
	"route":   tags(rawRoute{}),
}

func tags(v any) []string {
	t := reflect.TypeOf(v)
	out := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		out = append(out, t.Field(i).Tag.Get("toml"))
	}
	return out
}

// suggest returns the known key closest to the last part of key, if one is
// close enough to be a typo.
func suggest(key []string) string {
	if len(key) == 0 {
		return ""
	}
	table := strings.Join(key[:len(key)-1], ".")
	candidates, ok := knownKeys[table]
	if !ok {
		return ""
	}
	last := strings.ToLower(key[len(key)-1])
	best, bestD := "", 3 // at most two edits
	for _, c := range candidates {
		d := editDistance(last, c)
		if strings.ReplaceAll(last, "-", "_") == c {
			d = 0
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func unwrapRegexpError(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// validUser accepts an unescaped SIP user part: letters, digits and
// -_.!~*'()&=+$;?/ (RFC 3261 §25.1, without ',' which lists split on).
func validUser(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || strings.IndexByte("-_.!~*'()&=+$;?/", c) >= 0 {
			continue
		}
		return false
	}
	return s != ""
}

// validName accepts trunk names: letters, digits, '-', '_', '.'.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return s != ""
}

// validHost accepts a DNS name (letters, digits, '-', '.', '_' for SRV-ish
// labels) or an IP address.
func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return !strings.Contains(s, "%")
	}
	if s == "" || len(s) > 253 || s[0] == '.' || s[0] == '-' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '.' && c != '_' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
