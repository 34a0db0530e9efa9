package trunk

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/media"
)

// DefaultRegisterExpires is the registration lifetime asked of a provider
// when a trunk names none.
const DefaultRegisterExpires = time.Hour

// Trunk is a provider or PBX the gateway sends calls to and accepts calls
// from: a [[trunk]] of the config file.
type Trunk struct {
	// Name identifies the trunk in routes, logs, metrics and the admin API.
	Name string
	// Host is the provider's host name, domain (resolved with RFC 3263:
	// NAPTR, SRV, A/AAAA) or IP address (an IPv6 one without brackets).
	Host string
	// Port is the port, 0 to let RFC 3263 choose (SRV, else the default
	// port of the transport).
	Port int
	// Transport is sip.UDP, sip.TCP or sip.TLS ("UDP", "TCP", "TLS").
	Transport string
	// Username and Password answer the provider's digest challenges (401
	// and 407). Both are "" for a trunk that authenticates by address.
	Username string
	Password string
	// Register asks for an outbound registration to Host, refreshed for
	// as long as the gateway runs.
	Register bool
	// RegisterExpires is the registration lifetime asked for.
	RegisterExpires time.Duration
	// FromUser and FromDomain make the address of record registered and
	// the From of calls: sip:FromUser@FromDomain. They default to
	// Username and Host.
	FromUser   string
	FromDomain string
	// ContactUser is the user part of the Contact registered, where the
	// provider sends inbound calls; it defaults to FromUser.
	ContactUser string
	// TrustedSources are the networks whose requests are accepted as
	// coming from this trunk, without authentication. Empty means the
	// addresses Host resolves to.
	TrustedSources []netip.Prefix
	// DIDs map the trunk's inbound numbers to local users, ordered by
	// number.
	DIDs []DID
	// Codecs is the trunk's codec policy (ParseCodecs): the calls bridged
	// to and from it offer it these formats only, in this order. nil is
	// the gateway's policy.
	Codecs []media.Codec
	// Weight is the trunk's share of the gateway when sources compete for
	// it, against 1 for any other source address (a phone, an office
	// behind NAT): under overload, or with the server transactions at
	// their bound, a source is refused first when it holds more than its
	// weight's share, so a trunk carrying the calls of many is served
	// while one address floods. Zero means DefaultWeight.
	Weight int
}

// DefaultWeight is the Weight of a trunk that names none.
const DefaultWeight = 10

// MaxWeight bounds Weight.
const MaxWeight = 1000

// String names the trunk and where it is, never its password (so that
// printing a Trunk with %v is safe).
func (t Trunk) String() string {
	hp := t.Host
	if t.Port != 0 {
		hp = net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	}
	return fmt.Sprintf("trunk %s (%s %s)", t.Name, t.Transport, hp)
}

// LogValue logs the trunk without its password.
func (t Trunk) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", t.Name),
		slog.String("host", t.Host),
		slog.Int("port", t.Port),
		slog.String("transport", t.Transport),
		slog.String("username", t.Username),
		slog.Bool("register", t.Register),
	)
}

// DID maps one inbound number to a local user.
type DID struct {
	// Number is the number as written in the file.
	Number string
	// User is the local user it rings.
	User string
}

// Route is an outbound dial rule: a [[route]] of the config file.
type Route struct {
	// Pattern is an RE2 regular expression (Go's regexp syntax) that must
	// match the whole dialed number: it is anchored at both ends.
	Pattern string
	// Strip is the number of leading characters removed from a matching
	// number.
	Strip int
	// Prefix is prepended after stripping.
	Prefix string
	// Trunk names the trunk the call goes out on.
	Trunk string
}

// Regexp compiles Pattern, anchored to match whole numbers.
func (r Route) Regexp() (*regexp.Regexp, error) {
	// Compiling the pattern alone first proves its parentheses balanced,
	// so that the wrapping below cannot be escaped ("a)|(b").
	if _, err := regexp.Compile(r.Pattern); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + r.Pattern + `)$`)
}

// NormalizeNumber returns the digits of a phone number as DIDs are
// compared: the part before any ';' (SIP user parameters such as
// ";npdi"), without a leading '+' and without the visual separators of
// RFC 3966 (space, '-', '.', '(', ')'). It reports false when what remains
// is empty or holds anything but digits.
func NormalizeNumber(s string) (string, bool) {
	s, _, _ = strings.Cut(s, ";")
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "+")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", false
		}
	}
	return b.String(), b.Len() > 0
}
