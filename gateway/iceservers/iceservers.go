// Package iceservers makes the ICE servers (STUN and TURN) that the
// gateway hands to browsers, for the RTCConfiguration of their
// PeerConnections: a browser on a network that blocks UDP, or lets
// nothing through but a TURN server, still reaches the gateway's media
// through a relay.
//
// TURN credentials are either static (one username and password for
// everyone) or, with a shared secret, time-limited ones of the scheme
// that coturn implements as "TURN REST API" (use-auth-secret,
// draft-uberti-behave-turn-rest-00): the username is
// "<expiry as Unix seconds>:<user>", the password
// base64(HMAC-SHA1(secret, username)). The TURN server checks the HMAC
// and the expiry with the same secret and no call to the gateway; a leaked
// password is worth nothing after its expiry, and names the user it was
// given to.
package iceservers

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/clock"
)

// DefaultTTL is how long time-limited credentials are valid: the TURN
// REST API draft's one day. The TURN server checks the expiry again at
// each refresh of an allocation (every few minutes), so a call that
// outlives its credentials loses its relay: a day outlasts any call, and
// the softphone asks for fresh credentials before each call.
const DefaultTTL = 24 * time.Hour

// Bounds of Config.TTL.
const (
	MinTTL = time.Minute
	MaxTTL = 7 * 24 * time.Hour
)

// ErrInvalidConfig is wrapped by New's errors.
var ErrInvalidConfig = errors.New("iceservers: invalid config")

// Config configures an Issuer.
type Config struct {
	// URLs are the servers, as RTCIceServer.urls spells them:
	// turn:host[:port][?transport=udp|tcp], turns:host[:port][?transport=tcp],
	// stun:host[:port] or stuns:host[:port].
	URLs []string
	// Username and Password are static TURN credentials. Not with Secret.
	Username, Password string
	// Secret is the secret shared with the TURN server (coturn's
	// static-auth-secret): credentials are made for each request and
	// expire after TTL.
	Secret string
	// TTL is the lifetime of time-limited credentials; default DefaultTTL.
	TTL time.Duration
	// Clock dates the expiry; nil is the system clock.
	Clock clock.Clock
}

// Issuer hands out ICE servers. The zero value hands out none; make one
// with New. It is safe for concurrent use.
type Issuer struct {
	stun, turn []string
	username   string
	password   string
	secret     []byte
	ttl        time.Duration
	clock      clock.Clock
}

// ICEServer is one entry of RTCConfiguration.iceServers, as JSON.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Servers is what a browser gets: ready to be the iceServers of its
// RTCConfiguration. TTL is the credentials' lifetime in seconds, 0 for
// static ones; Expires is when they lapse.
type Servers struct {
	ICEServers []ICEServer `json:"iceServers"`
	TTL        int64       `json:"ttl,omitempty"`
	Expires    time.Time   `json:"expires,omitzero"`
}

// New checks cfg and returns its Issuer, or an error wrapping
// ErrInvalidConfig that names the faulty part (never a secret).
func New(cfg Config) (*Issuer, error) {
	bad := func(format string, args ...any) (*Issuer, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	i := &Issuer{ttl: cfg.TTL, clock: clock.Or(cfg.Clock)}
	if i.ttl == 0 {
		i.ttl = DefaultTTL
	}
	if i.ttl < MinTTL || i.ttl > MaxTTL {
		return bad("credential lifetime %v is not between %v and %v", i.ttl, MinTTL, MaxTTL)
	}
	for _, u := range cfg.URLs {
		turn, err := CheckURL(u)
		if err != nil {
			return bad("%v", err)
		}
		if turn {
			i.turn = append(i.turn, u)
		} else {
			i.stun = append(i.stun, u)
		}
	}
	static := cfg.Username != "" || cfg.Password != ""
	switch {
	case static && cfg.Secret != "":
		return bad("static credentials and a shared secret are set: choose one")
	case static && (cfg.Username == "" || cfg.Password == ""):
		return bad("a static username needs its password, and a password its username")
	case len(i.turn) > 0 && !static && cfg.Secret == "":
		return bad("TURN servers need credentials: static ones or a shared secret")
	case len(i.turn) == 0 && (static || cfg.Secret != ""):
		return bad("TURN credentials are set but no turn: or turns: URL")
	case strings.ContainsAny(cfg.Username, ":\x00\r\n"):
		return bad("the static username holds a colon or a control character")
	}
	i.username, i.password, i.secret = cfg.Username, cfg.Password, []byte(cfg.Secret)
	return i, nil
}

// CheckURL checks a STUN or TURN URL (RFC 7064, RFC 7065) and reports
// whether it is a TURN one.
func CheckURL(raw string) (turn bool, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque == "" {
		return false, fmt.Errorf("%q is not a STUN or TURN URL; write turn:host:3478 or turns:host:5349?transport=tcp", raw)
	}
	switch u.Scheme {
	case "turn", "turns":
		turn = true
	case "stun", "stuns":
	default:
		return false, fmt.Errorf("%q: scheme %q is not turn, turns, stun or stuns", raw, u.Scheme)
	}
	host, port := u.Opaque, ""
	if strings.HasPrefix(host, "[") || strings.Contains(host, ":") {
		h, p, err := net.SplitHostPort(u.Opaque)
		switch {
		case err == nil:
			host, port = h, p
		case strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]"):
			host = host[1 : len(host)-1]
		default:
			return false, fmt.Errorf("%q: %q is not host or host:port (an IPv6 address in brackets)", raw, u.Opaque)
		}
	}
	if !validHost(host) {
		return false, fmt.Errorf("%q: %q is not a host name or IP address", raw, host)
	}
	if port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return false, fmt.Errorf("%q: port %q is not a number from 1 to 65535", raw, port)
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return false, fmt.Errorf("%q: %w", raw, err)
	}
	for k, vs := range q {
		if k != "transport" || !turn || len(vs) != 1 || (vs[0] != "udp" && vs[0] != "tcp") {
			return false, fmt.Errorf("%q: only ?transport=udp or ?transport=tcp may follow a turn: or turns: URL", raw)
		}
	}
	if u.Scheme == "turns" && q.Get("transport") == "udp" {
		return false, fmt.Errorf("%q: turns: runs over TLS, so over TCP", raw)
	}
	return turn, nil
}

// validHost reports whether s is an IP address or a DNS name: letters,
// digits, hyphens and dots, no empty label.
func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	name := strings.TrimSuffix(s, ".")
	bad := func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.')
	}
	return name != "" && len(name) <= 253 && strings.IndexFunc(name, bad) < 0 &&
		!strings.HasPrefix(name, ".") && !strings.Contains(name, "..")
}

// Enabled reports whether there is any server to hand out.
func (i *Issuer) Enabled() bool { return i != nil && len(i.stun)+len(i.turn) > 0 }

// TimeLimited reports whether the TURN credentials expire.
func (i *Issuer) TimeLimited() bool { return i != nil && len(i.secret) > 0 }

// For returns the servers for user, an authenticated user of the
// gateway, whose name goes into time-limited usernames so that the TURN
// server's logs tell whose allocation it is.
func (i *Issuer) For(user string) Servers {
	var out Servers
	if !i.Enabled() {
		out.ICEServers = []ICEServer{}
		return out
	}
	if len(i.stun) > 0 {
		out.ICEServers = append(out.ICEServers, ICEServer{URLs: i.stun})
	}
	if len(i.turn) == 0 {
		return out
	}
	s := ICEServer{URLs: i.turn, Username: i.username, Credential: i.password}
	if len(i.secret) > 0 {
		expires := i.clock.Now().Add(i.ttl).Truncate(time.Second)
		s.Username = strconv.FormatInt(expires.Unix(), 10) + ":" + user
		s.Credential = Password(i.secret, s.Username)
		out.TTL, out.Expires = int64(i.ttl/time.Second), expires.UTC()
	}
	out.ICEServers = append(out.ICEServers, s)
	return out
}

// Password is the TURN REST API password of username:
// base64(HMAC-SHA1(secret, username)).
func Password(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// LogValue shows the issuer in logs without its secret or password.
func (i *Issuer) LogValue() slog.Value {
	if !i.Enabled() {
		return slog.StringValue("off")
	}
	mode := "static"
	if i.TimeLimited() {
		mode = "shared secret, ttl " + i.ttl.String()
	}
	return slog.GroupValue(
		slog.Any("urls", append(append([]string(nil), i.stun...), i.turn...)),
		slog.String("credentials", mode),
	)
}
