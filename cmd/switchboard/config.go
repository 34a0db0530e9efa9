package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/switchboard/switchboard/forwarded"
	"github.com/switchboard/switchboard/sipws"
)

// envPrefix starts the name of every environment variable the gateway reads.
const envPrefix = "SWITCHBOARD_"

// Config is the gateway's settings. Each field is read from the environment
// variable SWITCHBOARD_<env tag>; README.md documents every one of them, and
// a test keeps the two in step.
//
// A variable that is set but empty makes its setting empty, even where there
// is a default: that is how an operator turns off a listener
// (SWITCHBOARD_SIP_UDP=). Settings that cannot be empty say so when the
// configuration is validated.
type Config struct {
	// Domain is the SIP domain served and the digest realm.
	Domain string `env:"DOMAIN" envDefault:"localhost"`

	// SIPUDP, SIPTCP and SIPTLS are the SIP listen addresses (host:port);
	// an empty one is off.
	SIPUDP string `env:"SIP_UDP" envDefault:"127.0.0.1:5060"`
	SIPTCP string `env:"SIP_TCP" envDefault:"127.0.0.1:5060"`
	SIPTLS string `env:"SIP_TLS"`

	// TLSCert and TLSKey are the PEM files of the certificate chain and
	// private key of every TLS listener (SIP TLS and HTTPS), read again
	// on SIGHUP.
	TLSCert string `env:"TLS_CERT"`
	TLSKey  string `env:"TLS_KEY"`

	// HTTP is the listen address of the web server: softphone page,
	// SIP over WebSocket, metrics and health checks.
	HTTP string `env:"HTTP" envDefault:"127.0.0.1:8080"`

	// HTTPS is the listen address of the web server over TLS: the same
	// endpoints as HTTP, with /ws as WSS. When it is set, HTTP redirects
	// to it, except for /healthz, /readyz and /metrics.
	HTTPS string `env:"HTTPS"`

	// ACMEDomains are the names to get certificates for with ACME
	// (RFC 8555), cached under DataDir; ACMEDirectory is the ACME
	// server's directory URL (empty: Let's Encrypt), ACMECA the PEM file
	// of the CA certificates trusted for it (empty: the system's), and
	// ACMEEmail the contact address given to it.
	ACMEDomains   DomainList `env:"ACME_DOMAINS"`
	ACMEDirectory string     `env:"ACME_DIRECTORY"`
	ACMECA        string     `env:"ACME_CA"`
	ACMEEmail     string     `env:"ACME_EMAIL"`

	// TrustedProxies are the reverse proxies whose ForwardedHeader is
	// believed: it then names the client (for logs, the throttle and the
	// Via of WebSocket requests) and says whether it used TLS.
	TrustedProxies  PrefixList `env:"TRUSTED_PROXIES"`
	ForwardedHeader string     `env:"FORWARDED_HEADER" envDefault:"X-Forwarded-For"`

	// WSOrigins are the origins allowed to open a SIP WebSocket; empty
	// means only the gateway's own host.
	WSOrigins OriginList `env:"WS_ORIGINS"`

	// WSHosts are more names by which clients reach /ws: a WebSocket
	// handshake's Host must be the domain, a listen or public address,
	// or one of these (DNS rebinding protection).
	WSHosts HostList `env:"WS_HOSTS"`

	// DataDir holds the embedded store.
	DataDir string `env:"DATA_DIR" envDefault:"./data"`

	// RTPPorts is the UDP port range of the SIP-side media legs.
	RTPPorts PortRange `env:"RTP_PORTS" envDefault:"20000-29999"`

	// PublicIP is the IP address announced in SDP and ICE when the
	// gateway is behind NAT; empty means "announce the local address".
	PublicIP string `env:"PUBLIC_IP"`

	// Media ports, ICE and TURN (validated in mediaconfig.go).
	// ICEPort is the UDP port of every browser leg, and with ICETCP the
	// TCP port of the same number (ICE-TCP); ICELite makes the gateway an
	// ICE-lite agent; MaxCalls caps the bridged calls. MediaFastPath
	// relays the browsers' audio without pion's packet pipeline.
	ICEPort       int  `env:"ICE_PORT" envDefault:"10000"`
	ICETCP        bool `env:"ICE_TCP" envDefault:"true"`
	ICELite       bool `env:"ICE_LITE" envDefault:"false"`
	MaxCalls      int  `env:"MAX_CALLS" envDefault:"500"`
	MediaFastPath bool `env:"MEDIA_FASTPATH" envDefault:"true"`
	// MediaCoalesce is media.Options.Coalesce: the media relay's pause
	// after a wake-up that found few datagrams; 0 turns it off.
	MediaCoalesce time.Duration `env:"MEDIA_COALESCE" envDefault:"300us"`
	// TURNURLs are the STUN and TURN servers handed to browsers, with
	// static credentials (TURNUsername, TURNPassword) or time-limited ones
	// made with TURNSecret, valid for TURNTTL.
	TURNURLs     []string      `env:"TURN_URLS" envSeparator:","`
	TURNUsername string        `env:"TURN_USERNAME"`
	TURNPassword string        `env:"TURN_PASSWORD"`
	TURNSecret   string        `env:"TURN_SECRET"`
	TURNTTL      time.Duration `env:"TURN_TTL" envDefault:"24h"`

	// Users are quick-start accounts.
	Users Accounts `env:"USERS"`

	// ConfigFile is the path of the file with accounts, trunks and routes.
	ConfigFile string `env:"CONFIG"`

	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	// Both are read without regard to case.
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"text"`

	// AdminToken is the bearer token of the admin API.
	AdminToken string `env:"ADMIN_TOKEN"`

	// SIPTrace logs every SIP message received and sent, whole, at debug
	// level (LogLevel must be debug to see it).
	SIPTrace bool `env:"SIP_TRACE" envDefault:"false"`

	// Pprof serves Go's profiles under /debug/pprof/ on the HTTP
	// listener, for measuring the gateway under load.
	Pprof bool `env:"PPROF" envDefault:"false"`

	// DrainTimeout is the grace period of a graceful stop (SIGTERM or
	// SIGINT): no new calls are taken, and the calls in progress have this
	// long to end by themselves before the gateway ends them with BYE.
	DrainTimeout time.Duration `env:"DRAIN_TIMEOUT" envDefault:"20s"`

	// ReconnectGrace is how long a bridged call waits for a browser whose
	// WebSocket dropped to register again over a new one; 0 ends the
	// call at once.
	ReconnectGrace time.Duration `env:"RECONNECT_GRACE" envDefault:"30s"`

	// DigestAlgorithms are the digest algorithms of the 401 and 407
	// challenges, in the order offered: MD5, SHA-256 or both.
	DigestAlgorithms []string `env:"DIGEST_ALGORITHMS" envSeparator:"," envDefault:"MD5"`

	// AuthenticateAll challenges every request from outside that is not
	// from a trusted trunk: strangers cannot call users anonymously.
	AuthenticateAll bool `env:"AUTHENTICATE_ALL" envDefault:"false"`
	// LocalOnly keeps users from calling other domains directly: only
	// the config file's routes lead out, through trunks.
	LocalOnly bool `env:"LOCAL_ONLY" envDefault:"false"`

	// Connection caps. TCPMaxConns and TCPMaxConnsPerIP bound the
	// connections of the SIP TCP listener, and separately of the TLS one,
	// in all and from one IPv4 address or IPv6 /64; WSMaxConns and
	// WSMaxConnsPerIP those of SIP over WebSocket. At a total cap the
	// oldest connection without a registration makes room for the new one.
	// UnregisteredIdleTimeout closes a TCP, TLS or WebSocket connection
	// without a registration after that long without a SIP message.
	TCPMaxConns             int           `env:"TCP_MAX_CONNS" envDefault:"5000"`
	TCPMaxConnsPerIP        int           `env:"TCP_MAX_CONNS_PER_IP" envDefault:"64"`
	WSMaxConns              int           `env:"WS_MAX_CONNS" envDefault:"5000"`
	WSMaxConnsPerIP         int           `env:"WS_MAX_CONNS_PER_IP" envDefault:"100"`
	UnregisteredIdleTimeout time.Duration `env:"UNREGISTERED_IDLE_TIMEOUT" envDefault:"60s"`

	// RedisURL, when set, keeps the location service in Redis (or Valkey)
	// and makes this gateway one instance of a cluster that shares it;
	// ClusterHost is the host by which the other instances reach this
	// one's SIP TCP listener (validated in clusterstack.go).
	RedisURL    string `env:"REDIS_URL"`
	ClusterHost string `env:"CLUSTER_HOST"`

	// GCPercent and MemoryLimit steer the garbage collector as GOGC and
	// GOMEMLIMIT do (gc.go), which win when they are set: the percent of
	// new heap over the live heap that starts a collection, and a soft
	// limit on the Go runtime's memory (0: none).
	GCPercent   int      `env:"GC_PERCENT" envDefault:"400"`
	MemoryLimit ByteSize `env:"MEMORY_LIMIT" envDefault:"1GiB"`
}

// loadConfig reads the settings from environ (variable name to value, as
// env.ToMap(os.Environ()) gives) and validates them. The error is a
// *ConfigError listing every problem, so an operator can fix them all in
// one go.
func loadConfig(environ map[string]string) (Config, error) {
	var cfg Config
	opts := env.Options{Environment: environ, Prefix: envPrefix}
	// caarlos0/env goes through every field even when one fails, so the
	// others can still be validated.
	var problems []error
	failed := make(map[string]bool)
	if err := env.ParseWithOptions(&cfg, opts); err != nil {
		problems = envProblems(err)
		for _, p := range problems {
			if fe, ok := p.(*FieldError); ok {
				failed[fe.Key] = true
			}
		}
	}
	clearEmpty(&cfg, environ)
	for _, p := range cfg.validate() {
		// A variable that did not parse has already said what is wrong;
		// ACME names that did not parse still mean that certificates are
		// to come from ACME, so a listener does not lack one.
		if errors.Is(p, errNoCertificateSource) && failed[envPrefix+"ACME_DOMAINS"] {
			continue
		}
		if fe, ok := p.(*FieldError); !ok || !failed[fe.Key] {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return Config{}, &ConfigError{Problems: problems}
	}
	return cfg, nil
}

// clearEmpty zeroes every field whose variable is present but empty.
// caarlos0/env treats an empty variable like a missing one and applies the
// default, but the runtime contract says an empty SWITCHBOARD_SIP_UDP turns
// UDP off, and an operator who empties any variable expects it empty.
func clearEmpty(cfg *Config, environ map[string]string) {
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	for i := range t.NumField() {
		key := envKey(t.Field(i))
		if val, ok := environ[key]; ok && val == "" {
			v.Field(i).SetZero()
		}
	}
}

// unknownSettings returns the SWITCHBOARD_* variables of environ that are
// no setting, sorted: most likely typos, which would otherwise leave the
// intended setting at its default without a word.
func unknownSettings(environ map[string]string) []string {
	known := make(map[string]bool)
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		known[envKey(t.Field(i))] = true
	}
	var unknown []string
	for key := range environ {
		if strings.HasPrefix(key, envPrefix) && !known[key] {
			unknown = append(unknown, key)
		}
	}
	slices.Sort(unknown)
	return unknown
}

// envKey is the environment variable of a Config field.
func envKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	return envPrefix + name
}

// envProblems turns the errors of caarlos0/env, which name Go fields, into
// errors that name the environment variable an operator has to change.
func envProblems(err error) []error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return []error{err}
	}
	t := reflect.TypeFor[Config]()
	problems := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				problems = append(problems, &FieldError{Key: envKey(f), Err: pe.Err})
				continue
			}
		}
		problems = append(problems, e)
	}
	return problems
}

// ConfigError reports settings that are malformed or contradict each other.
type ConfigError struct {
	// Problems has one error per fault; each names its variable.
	Problems []error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration:")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e *ConfigError) Unwrap() []error { return e.Problems }

// FieldError is a problem with one environment variable.
type FieldError struct {
	Key string // the variable, e.g. SWITCHBOARD_RTP_PORTS
	Err error  // what is wrong and how to fix it
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// validate checks the settings one by one and against each other, and
// returns every problem found.
func (c *Config) validate() []error {
	var problems []error
	add := func(key string, format string, args ...any) {
		problems = append(problems, &FieldError{Key: envPrefix + key, Err: fmt.Errorf(format, args...)})
	}

	switch {
	case c.Domain == "":
		add("DOMAIN", "must not be empty; set the SIP domain served, e.g. example.com")
	case !validHost(c.Domain):
		add("DOMAIN", "%q is not a host name or IP address", c.Domain)
	}

	// The listeners: each address must parse, and the ones that share a
	// protocol must not collide, since only one of them could bind.
	type listener struct{ key, addr, network string }
	listeners := []listener{
		{"SIP_UDP", c.SIPUDP, "udp"},
		{"SIP_TCP", c.SIPTCP, "tcp"},
		{"SIP_TLS", c.SIPTLS, "tcp"},
		{"HTTP", c.HTTP, "tcp"},
		{"HTTPS", c.HTTPS, "tcp"},
	}
	if c.HTTP == "" {
		add("HTTP", "must not be empty: it serves /healthz, /metrics and the softphone; e.g. 127.0.0.1:8080")
	}
	valid := listeners[:0:0]
	for _, l := range listeners {
		if l.addr == "" {
			continue
		}
		if err := checkListenAddr(l.addr); err != nil {
			add(l.key, "%w", err)
			continue
		}
		valid = append(valid, l)
	}
	for i, a := range valid {
		for _, b := range valid[i+1:] {
			if a.network == b.network && sameSocket(a.addr, b.addr) {
				add(b.key, "%s is also the address of %s%s; give each its own port", b.addr, envPrefix, a.key)
			}
		}
	}

	problems = append(problems, c.validateTLS()...)

	if c.DataDir == "" {
		add("DATA_DIR", "must not be empty; e.g. ./data or /var/lib/switchboard")
	} else if fi, err := os.Stat(c.DataDir); err == nil && !fi.IsDir() {
		add("DATA_DIR", "%s exists and is not a directory", c.DataDir)
	}

	if c.RTPPorts == (PortRange{}) {
		add("RTP_PORTS", "must not be empty; e.g. 20000-29999")
	} else if c.SIPUDP != "" {
		// A SIP port inside the RTP range would be handed to a call and
		// fail to bind, or worse, receive another call's media.
		if _, p, err := net.SplitHostPort(c.SIPUDP); err == nil {
			if port, err := strconv.ParseUint(p, 10, 16); err == nil && port != 0 && c.RTPPorts.Contains(uint16(port)) {
				add("RTP_PORTS", "%s contains the SIP UDP port %d; move one of them", c.RTPPorts, port)
			}
		}
	}

	if c.PublicIP != "" {
		a, err := netip.ParseAddr(c.PublicIP)
		switch {
		case err != nil:
			add("PUBLIC_IP", "%q is not an IP address; give the address that peers reach the gateway on, e.g. 203.0.113.7", c.PublicIP)
		case a.IsUnspecified() || a.IsMulticast():
			add("PUBLIC_IP", "%s cannot be announced to peers; give the address they should send media to", a)
		case a.Zone() != "":
			add("PUBLIC_IP", "%s has a zone, which peers cannot use; drop the %%%s", a, a.Zone())
		}
	}

	if c.ConfigFile != "" {
		if fi, err := os.Stat(c.ConfigFile); err != nil {
			add("CONFIG", "%w", err)
		} else if !fi.Mode().IsRegular() {
			add("CONFIG", "%s is not a regular file", c.ConfigFile)
		}
	}

	if _, ok := logLevels[strings.ToLower(c.LogLevel)]; !ok {
		add("LOG_LEVEL", "%q is not a level; use debug, info, warn or error", c.LogLevel)
	}
	if f := strings.ToLower(c.LogFormat); f != "text" && f != "json" {
		add("LOG_FORMAT", "%q is not a format; use text or json", c.LogFormat)
	}

	if c.DrainTimeout < 0 || c.DrainTimeout > maxDrainTimeout {
		add("DRAIN_TIMEOUT", "%v is out of range; use a duration from 0s to %v, e.g. 20s", c.DrainTimeout, maxDrainTimeout)
	}
	if c.ReconnectGrace < 0 || c.ReconnectGrace > maxReconnectGrace {
		add("RECONNECT_GRACE", "%v is out of range; use a duration from 0s to %v, e.g. 30s", c.ReconnectGrace, maxReconnectGrace)
	}

	// The token is never echoed: it is a secret even when it is wrong.
	if len(c.DigestAlgorithms) == 0 {
		add("DIGEST_ALGORITHMS", "is empty; use MD5, SHA-256 or MD5,SHA-256")
	}
	for _, a := range c.DigestAlgorithms {
		if a != "MD5" && a != "SHA-256" {
			add("DIGEST_ALGORITHMS", "has %q; use MD5 and/or SHA-256", a)
		}
	}
	for _, cp := range []struct {
		key string
		v   int
	}{
		{"TCP_MAX_CONNS", c.TCPMaxConns}, {"TCP_MAX_CONNS_PER_IP", c.TCPMaxConnsPerIP},
		{"WS_MAX_CONNS", c.WSMaxConns}, {"WS_MAX_CONNS_PER_IP", c.WSMaxConnsPerIP},
	} {
		if cp.v < 1 {
			add(cp.key, "%d is not a cap; use a count of connections, at least 1", cp.v)
		}
	}
	if c.UnregisteredIdleTimeout < time.Second || c.UnregisteredIdleTimeout > maxIdleTimeout {
		add("UNREGISTERED_IDLE_TIMEOUT", "%v is out of range; use a duration from 1s to %v, e.g. 60s", c.UnregisteredIdleTimeout, maxIdleTimeout)
	}

	if c.GCPercent < minGCPercent || c.GCPercent > maxGCPercent {
		add("GC_PERCENT", "%d is out of range; use %d to %d, e.g. %d", c.GCPercent, minGCPercent, maxGCPercent, defaultGCPercent)
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < minMemoryLimit {
		add("MEMORY_LIMIT", "%v is below %v, where the collector would run all the time; use e.g. 1GiB, or 0 for no limit", c.MemoryLimit, ByteSize(minMemoryLimit))
	}

	c.validateMedia(add)
	c.validateCluster(add)
	if _, err := forwarded.ParseHeader(c.ForwardedHeader); err != nil {
		add("FORWARDED_HEADER", "%q is not a forwarding header; use X-Forwarded-For (with X-Forwarded-Proto) or Forwarded (RFC 7239): the one your proxy writes", c.ForwardedHeader)
	}

	if t := c.AdminToken; t != "" {
		switch {
		case len(t) < minAdminTokenLen:
			add("ADMIN_TOKEN", "is too short (%d characters); use at least %d, e.g. the output of `openssl rand -hex 32`", len(t), minAdminTokenLen)
		case strings.ContainsFunc(t, isSpaceOrControl):
			add("ADMIN_TOKEN", "contains spaces or control characters, which an Authorization header cannot carry")
		}
	}

	return problems
}

// validateTLS checks the settings of the TLS listeners and their
// certificates: files, ACME, or both.
func (c *Config) validateTLS() []error {
	var problems []error
	add := func(key string, format string, args ...any) {
		problems = append(problems, &FieldError{Key: envPrefix + key, Err: fmt.Errorf(format, args...)})
	}
	files := c.TLSCert != "" || c.TLSKey != ""
	acme := len(c.ACMEDomains) > 0
	listener := c.SIPTLS != "" || c.HTTPS != ""
	switch {
	case !files:
	case c.TLSCert == "" || c.TLSKey == "":
		add("TLS_CERT", "%sTLS_CERT and %sTLS_KEY go together: set both or neither", envPrefix, envPrefix)
	case !listener:
		add("TLS_CERT", "is set but %sSIP_TLS and %sHTTPS are empty, so nothing would use it; set one of them (e.g. %sHTTPS=:443) or unset the certificate", envPrefix, envPrefix, envPrefix)
	default:
		// Load the pair now so that a wrong path, a key that does not match
		// or a bad PEM block stops the start, not the first TLS handshake.
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			add("TLS_CERT", "cannot load the key pair: %w", err)
		}
	}
	if !files && !acme {
		for _, l := range []struct{ key, addr string }{{"SIP_TLS", c.SIPTLS}, {"HTTPS", c.HTTPS}} {
			if l.addr != "" {
				problems = append(problems, &FieldError{Key: envPrefix + l.key, Err: fmt.Errorf("%w: set %sTLS_CERT and %sTLS_KEY to PEM files, or %sACME_DOMAINS to get one", errNoCertificateSource, envPrefix, envPrefix, envPrefix)})
			}
		}
	}
	if acme && !listener {
		add("ACME_DOMAINS", "is set but %sSIP_TLS and %sHTTPS are empty, so no certificate would be used; set %sHTTPS (e.g. :443)", envPrefix, envPrefix, envPrefix)
	}
	if !acme {
		for _, k := range []struct{ key, v string }{{"ACME_DIRECTORY", c.ACMEDirectory}, {"ACME_CA", c.ACMECA}, {"ACME_EMAIL", c.ACMEEmail}} {
			if k.v != "" {
				add(k.key, "is set but %sACME_DOMAINS is empty; list the names to get certificates for", envPrefix)
			}
		}
	}
	if d := c.ACMEDirectory; d != "" {
		if u, err := url.Parse(d); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			add("ACME_DIRECTORY", "%q is not an https:// URL; give the ACME server's directory, e.g. https://acme.example.net/directory", d)
		}
	}
	if c.ACMECA != "" {
		if _, err := loadCertPool(c.ACMECA); err != nil {
			add("ACME_CA", "%w", err)
		}
	}
	if e := c.ACMEEmail; e != "" && (!strings.Contains(e, "@") || strings.ContainsFunc(e, isSpaceOrControl) || strings.ContainsAny(e, ",<>")) {
		add("ACME_EMAIL", "%q is not an e-mail address", e)
	}
	return problems
}

// errNoCertificateSource is the problem of a TLS listener without files or
// ACME names.
var errNoCertificateSource = errors.New("needs a certificate")

// loadCertPool reads a PEM file of CA certificates.
func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// maxDrainTimeout bounds the grace period of a stop: a supervisor kills a
// process that takes longer anyway.
const maxDrainTimeout = time.Hour

// maxReconnectGrace bounds ReconnectGrace: a browser's media path fails
// after half a minute without packets anyway, and a call whose browser is
// gone holds its phone that long.
const maxReconnectGrace = 10 * time.Minute

// flowGrace is ReconnectGrace as the gateway takes it: there, zero means
// the default and negative none.
func (c *Config) flowGrace() time.Duration {
	if c.ReconnectGrace == 0 {
		return -1
	}
	return c.ReconnectGrace
}

// maxIdleTimeout bounds UnregisteredIdleTimeout: registered connections
// idle for 10 minutes, and a stranger must not outlast them.
const maxIdleTimeout = 10 * time.Minute

// minAdminTokenLen keeps the admin token out of reach of guessing.
const minAdminTokenLen = 16

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// slogLevel is LogLevel for log/slog; validate has checked it.
func (c *Config) slogLevel() slog.Level { return logLevels[strings.ToLower(c.LogLevel)] }

// jsonLogs reports whether the log is JSON rather than text.
func (c *Config) jsonLogs() bool { return strings.EqualFold(c.LogFormat, "json") }

// LogValue shows the settings in the startup log with the secrets left out.
func (c Config) LogValue() slog.Value {
	users := make([]string, len(c.Users))
	for i, a := range c.Users {
		users[i] = a.User
	}
	return slog.GroupValue(
		slog.String("domain", c.Domain),
		slog.String("sip_udp", c.SIPUDP),
		slog.String("sip_tcp", c.SIPTCP),
		slog.String("sip_tls", c.SIPTLS),
		slog.String("http", c.HTTP),
		slog.String("https", c.HTTPS),
		slog.Any("acme_domains", []string(c.ACMEDomains)),
		slog.String("acme_directory", c.ACMEDirectory),
		slog.Any("trusted_proxies", c.TrustedProxies.Strings()),
		slog.String("forwarded_header", c.ForwardedHeader),
		slog.Any("ws_origins", []string(c.WSOrigins)),
		slog.Any("ws_hosts", []string(c.WSHosts)),
		slog.String("data_dir", c.DataDir),
		slog.String("rtp_ports", c.RTPPorts.String()),
		slog.String("public_ip", c.PublicIP),
		slog.Int("ice_port", c.ICEPort),
		slog.Bool("ice_tcp", c.ICETCP),
		slog.Bool("ice_lite", c.ICELite),
		slog.Int("max_calls", c.MaxCalls),
		slog.Bool("media_fastpath", c.MediaFastPath),
		slog.Duration("media_coalesce", c.MediaCoalesce),
		slog.Any("turn_urls", c.TURNURLs),
		slog.String("turn_username", c.TURNUsername),
		slog.Bool("turn_password_set", c.TURNPassword != ""),
		slog.Bool("turn_secret_set", c.TURNSecret != ""),
		slog.Duration("turn_ttl", c.TURNTTL),
		slog.Any("users", users),
		slog.String("config", c.ConfigFile),
		slog.Bool("admin_token_set", c.AdminToken != ""),
		slog.Bool("sip_trace", c.SIPTrace),
		slog.Duration("drain_timeout", c.DrainTimeout),
		slog.Duration("reconnect_grace", c.ReconnectGrace),
		slog.Int("tcp_max_conns", c.TCPMaxConns),
		slog.Int("tcp_max_conns_per_ip", c.TCPMaxConnsPerIP),
		slog.Int("ws_max_conns", c.WSMaxConns),
		slog.Int("ws_max_conns_per_ip", c.WSMaxConnsPerIP),
		slog.Duration("unregistered_idle_timeout", c.UnregisteredIdleTimeout),
		slog.Bool("redis_url_set", c.RedisURL != ""),
		slog.String("cluster_host", c.ClusterHost),
	)
}

// checkListenAddr reports why addr is not a usable host:port to listen on.
// An empty host means every interface; port 0 asks the system for one.
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (for IPv6 write [::1]:5060): %w", addr, err)
	}
	if host != "" && !validHost(host) {
		return fmt.Errorf("%q: %q is not a host name or IP address", addr, host)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// sameSocket reports whether two valid listen addresses would ask for the
// same port on an overlapping set of interfaces.
func sameSocket(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb || pa == "0" {
		return false
	}
	return ha == hb || isWildcard(ha) || isWildcard(hb)
}

func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}

// isLoopback reports whether a listen address only accepts local peers.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// validHost reports whether s is an IP address or a DNS host name
// (letters, digits and hyphens in dot-separated labels).
func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	if len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// PortRange is an inclusive range of UDP ports, written "20000-29999".
// Start is even because RTP takes an even port and RTCP the odd one above
// (RFC 3550 §11).
type PortRange struct {
	Start, End uint16
}

// UnmarshalText parses "start-end".
func (r *PortRange) UnmarshalText(text []byte) error {
	s := string(text)
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return fmt.Errorf("%q is not a range; write start-end, e.g. 20000-29999", s)
	}
	start, err := parsePort(lo)
	if err != nil {
		return fmt.Errorf("%q: start %w", s, err)
	}
	end, err := parsePort(hi)
	if err != nil {
		return fmt.Errorf("%q: end %w", s, err)
	}
	if start >= end {
		return fmt.Errorf("%q: start must be below end, e.g. 20000-29999", s)
	}
	if start%2 != 0 {
		// start > 1 here, since start < end and start is odd.
		return fmt.Errorf("%q: start %d is odd; RTP needs an even port (RTCP takes the next one), e.g. %d-%d", s, start, start-1, end)
	}
	*r = PortRange{Start: start, End: end}
	return nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return uint16(n), nil
}

// String returns the range as UnmarshalText reads it; empty for the zero
// range.
func (r PortRange) String() string {
	if r == (PortRange{}) {
		return ""
	}
	return fmt.Sprintf("%d-%d", r.Start, r.End)
}

// Contains reports whether port is in the range.
func (r PortRange) Contains(port uint16) bool { return r.Start <= port && port <= r.End }

// Account is a quick-start SIP account.
type Account struct {
	User     string
	Password string
}

// String shows the user only, so that printing an Account cannot leak its
// password into a log.
func (a Account) String() string { return a.User + ":<password>" }

// maxUserLen and maxPasswordLen bound what we will hash and store; real
// accounts are far shorter.
const (
	maxUserLen     = 64
	maxPasswordLen = 128
)

// Accounts is the list form of SWITCHBOARD_USERS: "alice:secret,1000:pass".
type Accounts []Account

// UnmarshalText parses comma-separated user:password entries. Spaces around
// an entry are ignored; the password is everything after the first colon, so
// it may hold colons but not commas. Error messages never quote a password.
func (a *Accounts) UnmarshalText(text []byte) error {
	var out Accounts
	seen := make(map[string]bool)
	for i, entry := range strings.Split(string(text), ",") {
		n := i + 1
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return fmt.Errorf("entry %d is empty; write user:password,user2:password2", n)
		}
		user, pass, ok := strings.Cut(entry, ":")
		switch {
		case !ok:
			return fmt.Errorf("entry %d has no colon; write user:password", n)
		case user == "":
			return fmt.Errorf("entry %d has no user before the colon", n)
		case len(user) > maxUserLen:
			return fmt.Errorf("entry %d: user is longer than %d characters", n, maxUserLen)
		case !validSIPUser(user):
			return fmt.Errorf("entry %d: user %q may hold only letters, digits and -_.!~*'()&=+$;?/", n, user)
		case seen[user]:
			return fmt.Errorf("entry %d: user %q is listed twice", n, user)
		case pass == "":
			return fmt.Errorf("entry %d: user %q has an empty password", n, user)
		case len(pass) > maxPasswordLen:
			return fmt.Errorf("entry %d: the password of %q is longer than %d characters", n, user, maxPasswordLen)
		case strings.ContainsFunc(pass, isControl):
			return fmt.Errorf("entry %d: the password of %q contains control characters", n, user)
		}
		seen[user] = true
		out = append(out, Account{User: user, Password: pass})
	}
	*a = out
	return nil
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// validSIPUser reports whether s can stand unescaped as the user part of a
// SIP URI: unreserved and user-unreserved characters of RFC 3261 §25.1,
// except the comma, which separates entries here.
func validSIPUser(s string) bool {
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			continue
		}
		if !strings.ContainsRune("-_.!~*'()&=+$;?/", r) {
			return false
		}
	}
	return s != ""
}

// OriginList is the list form of SWITCHBOARD_WS_ORIGINS:
// "https://app.example.com,http://localhost:3000". Entries are stored as
// browsers send them in the Origin header: scheme://host[:port], lower case.
type OriginList []string

// UnmarshalText parses comma-separated origins.
func (o *OriginList) UnmarshalText(text []byte) error {
	var out OriginList
	for i, entry := range strings.Split(string(text), ",") {
		entry = strings.TrimSpace(entry)
		origin, err := parseOrigin(entry)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i+1, err)
		}
		out = append(out, origin)
	}
	*o = out
	return nil
}

func parseOrigin(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty origin; write scheme://host[:port], e.g. https://app.example.com")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an origin: %w", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q is not an origin; it must start with http:// or https://", s)
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("%q has no host", s)
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", fmt.Errorf("%q is not an origin; keep only scheme://host[:port]", s)
	}
	if p := u.Port(); p != "" {
		if _, err := parsePort(p); err != nil {
			return "", fmt.Errorf("%q: port %w", s, err)
		}
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// HostList is the list form of SWITCHBOARD_WS_HOSTS:
// "sip.example.com,*.example.net,203.0.113.7". Entries are host names, IP
// addresses or "*.domain", without a port: any port is allowed.
type HostList []string

// UnmarshalText parses comma-separated hosts.
func (h *HostList) UnmarshalText(text []byte) error {
	var out HostList
	for i, entry := range strings.Split(string(text), ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return fmt.Errorf("entry %d is empty; write a host name, e.g. sip.example.com", i+1)
		}
		if err := sipws.CheckAllowedHost(entry); err != nil {
			return fmt.Errorf("entry %d, %q: %w", i+1, entry, err)
		}
		out = append(out, entry)
	}
	*h = out
	return nil
}

// DomainList is the list form of SWITCHBOARD_ACME_DOMAINS:
// "sip.example.com,www.example.com". Entries are DNS names with at least
// two labels, lower case; not IP addresses, nor wildcards, which ACME's
// HTTP and TLS challenges cannot prove.
type DomainList []string

// UnmarshalText parses comma-separated names.
func (d *DomainList) UnmarshalText(text []byte) error {
	var out DomainList
	for i, entry := range strings.Split(string(text), ",") {
		entry = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(entry), "."))
		_, ipErr := netip.ParseAddr(entry)
		switch {
		case entry == "":
			return fmt.Errorf("entry %d is empty; write a DNS name, e.g. sip.example.com", i+1)
		case ipErr == nil:
			return fmt.Errorf("entry %d: %s is an IP address; ACME certificates here are for DNS names", i+1, entry)
		case strings.Contains(entry, "*"):
			return fmt.Errorf("entry %d: %s is a wildcard, which needs the DNS challenge; list each name", i+1, entry)
		case !validHost(entry) || !strings.Contains(entry, "."):
			return fmt.Errorf("entry %d: %q is not a DNS name with a dot, e.g. sip.example.com", i+1, entry)
		case slices.Contains(out, entry):
			return fmt.Errorf("entry %d: %s is listed twice", i+1, entry)
		}
		out = append(out, entry)
	}
	*d = out
	return nil
}

// PrefixList is the list form of SWITCHBOARD_TRUSTED_PROXIES:
// "10.0.0.0/8,192.0.2.7,2001:db8::/32". A bare address is one host.
type PrefixList []netip.Prefix

// UnmarshalText parses comma-separated CIDR prefixes and addresses.
func (p *PrefixList) UnmarshalText(text []byte) error {
	var out PrefixList
	for i, entry := range strings.Split(string(text), ",") {
		entry = strings.TrimSpace(entry)
		var pfx netip.Prefix
		if strings.Contains(entry, "/") {
			var err error
			if pfx, err = netip.ParsePrefix(entry); err != nil {
				return fmt.Errorf("entry %d: %q is not a CIDR prefix, e.g. 10.0.0.0/8: %w", i+1, entry, err)
			}
			if pfx != pfx.Masked() {
				return fmt.Errorf("entry %d: %s has bits set past its length; did you mean %s?", i+1, entry, pfx.Masked())
			}
		} else {
			ip, err := netip.ParseAddr(entry)
			if err != nil {
				return fmt.Errorf("entry %d: %q is neither an IP address nor a CIDR prefix, e.g. 10.0.0.0/8", i+1, entry)
			}
			pfx = netip.PrefixFrom(ip, ip.BitLen())
		}
		if pfx.Addr().Zone() != "" {
			return fmt.Errorf("entry %d: %s has a zone; drop it", i+1, entry)
		}
		if pfx.Bits() == 0 {
			return fmt.Errorf("entry %d: %s trusts every address, so any client could name itself; list your proxies", i+1, entry)
		}
		if a := pfx.Addr(); a.Is4In6() {
			// Clients' addresses are compared unmapped.
			if pfx.Bits() < 96 {
				return fmt.Errorf("entry %d: %s reaches past the IPv4-mapped range; write IPv4 prefixes as such", i+1, entry)
			}
			pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
		}
		out = append(out, pfx)
	}
	*p = out
	return nil
}

// Strings returns the prefixes as text, for logs.
func (p PrefixList) Strings() []string {
	out := make([]string, len(p))
	for i, pfx := range p {
		out[i] = pfx.String()
	}
	return out
}

// trust returns the forwarded.Trust of the settings; validate has checked
// the header.
func (c *Config) trust() forwarded.Trust {
	h, _ := forwarded.ParseHeader(c.ForwardedHeader)
	return forwarded.Trust{Proxies: c.TrustedProxies, Header: h}
}
