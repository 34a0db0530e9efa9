package main

import (
	"bufio"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/forwarded"
	"github.com/switchboard/switchboard/transport/transporttest"
)

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(map[string]string{})
	if err != nil {
		t.Fatalf("loadConfig(no variables): %v", err)
	}
	want := Config{
		Domain:           "localhost",
		SIPUDP:           "127.0.0.1:5060",
		SIPTCP:           "127.0.0.1:5060",
		HTTP:             "127.0.0.1:8080",
		DataDir:          "./data",
		RTPPorts:         PortRange{Start: 20000, End: 29999},
		ICEPort:          10000,
		ICETCP:           true,
		MaxCalls:         500,
		MediaFastPath:    true,
		MediaCoalesce:    300 * time.Microsecond,
		TURNTTL:          24 * time.Hour,
		LogLevel:         "info",
		LogFormat:        "text",
		DrainTimeout:     20 * time.Second,
		ReconnectGrace:   30 * time.Second,
		DigestAlgorithms: []string{"MD5"},
		ForwardedHeader:  "X-Forwarded-For",

		TCPMaxConns:             5000,
		TCPMaxConnsPerIP:        64,
		WSMaxConns:              5000,
		WSMaxConnsPerIP:         100,
		UnregisteredIdleTimeout: time.Minute,

		GCPercent:   400,
		MemoryLimit: 1 << 30,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestLoadConfigValid(t *testing.T) {
	dir := t.TempDir()
	cert, key := transporttest.KeyPairFiles(t, dir)
	configFile := filepath.Join(dir, "switchboard.conf")
	if err := os.WriteFile(configFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{
			name: "empty UDP and TCP turn them off",
			env:  map[string]string{"SWITCHBOARD_SIP_UDP": "", "SWITCHBOARD_SIP_TCP": ""},
			check: func(t *testing.T, c Config) {
				if c.SIPUDP != "" || c.SIPTCP != "" {
					t.Errorf("SIPUDP=%q SIPTCP=%q, want both empty", c.SIPUDP, c.SIPTCP)
				}
			},
		},
		{
			name: "listeners on all interfaces and IPv6",
			env: map[string]string{
				"SWITCHBOARD_SIP_UDP": ":5070",
				"SWITCHBOARD_SIP_TCP": "[::1]:5070",
				"SWITCHBOARD_HTTP":    "0.0.0.0:80",
			},
			check: func(t *testing.T, c Config) {
				if c.SIPUDP != ":5070" || c.SIPTCP != "[::1]:5070" || c.HTTP != "0.0.0.0:80" {
					t.Errorf("got %q %q %q", c.SIPUDP, c.SIPTCP, c.HTTP)
				}
			},
		},
		{
			name: "connection caps",
			env: map[string]string{
				"SWITCHBOARD_TCP_MAX_CONNS": "20000", "SWITCHBOARD_TCP_MAX_CONNS_PER_IP": "8",
				"SWITCHBOARD_WS_MAX_CONNS": "300", "SWITCHBOARD_WS_MAX_CONNS_PER_IP": "1000",
				"SWITCHBOARD_UNREGISTERED_IDLE_TIMEOUT": "15s",
			},
			check: func(t *testing.T, c Config) {
				if c.TCPMaxConns != 20000 || c.TCPMaxConnsPerIP != 8 || c.WSMaxConns != 300 || c.WSMaxConnsPerIP != 1000 ||
					c.UnregisteredIdleTimeout != 15*time.Second {
					t.Errorf("got %d %d %d %d %v", c.TCPMaxConns, c.TCPMaxConnsPerIP, c.WSMaxConns, c.WSMaxConnsPerIP, c.UnregisteredIdleTimeout)
				}
			},
		},
		{
			name: "sip trace and drain timeout",
			env:  map[string]string{"SWITCHBOARD_SIP_TRACE": "true", "SWITCHBOARD_DRAIN_TIMEOUT": "1m30s"},
			check: func(t *testing.T, c Config) {
				if !c.SIPTrace || c.DrainTimeout != 90*time.Second {
					t.Errorf("SIPTrace=%v DrainTimeout=%v", c.SIPTrace, c.DrainTimeout)
				}
			},
		},
		{
			name: "same port on UDP and TCP is fine",
			env:  map[string]string{"SWITCHBOARD_SIP_UDP": ":5060", "SWITCHBOARD_SIP_TCP": ":5060"},
		},
		{
			name: "port 0 never collides",
			env:  map[string]string{"SWITCHBOARD_SIP_TCP": "127.0.0.1:0", "SWITCHBOARD_HTTP": "127.0.0.1:0"},
		},
		{
			name: "TLS listener with its key pair",
			env: map[string]string{
				"SWITCHBOARD_SIP_TLS":  "127.0.0.1:5061",
				"SWITCHBOARD_TLS_CERT": cert,
				"SWITCHBOARD_TLS_KEY":  key,
			},
			check: func(t *testing.T, c Config) {
				if c.SIPTLS != "127.0.0.1:5061" || c.TLSCert != cert || c.TLSKey != key {
					t.Errorf("got %q %q %q", c.SIPTLS, c.TLSCert, c.TLSKey)
				}
			},
		},
		{
			name: "HTTPS with files, ACME and trusted proxies",
			env: map[string]string{
				"SWITCHBOARD_HTTPS":            "[::1]:8443",
				"SWITCHBOARD_TLS_CERT":         cert,
				"SWITCHBOARD_TLS_KEY":          key,
				"SWITCHBOARD_ACME_DOMAINS":     " Sip.Example.com., www.example.com",
				"SWITCHBOARD_ACME_DIRECTORY":   "https://acme.example.net/dir",
				"SWITCHBOARD_ACME_CA":          cert,
				"SWITCHBOARD_ACME_EMAIL":       "ops@example.com",
				"SWITCHBOARD_TRUSTED_PROXIES":  "10.0.0.0/8, 192.0.2.7, 2001:db8::/32, ::ffff:198.51.100.0/120",
				"SWITCHBOARD_FORWARDED_HEADER": "forwarded",
			},
			check: func(t *testing.T, c Config) {
				if want := (DomainList{"sip.example.com", "www.example.com"}); !reflect.DeepEqual(c.ACMEDomains, want) {
					t.Errorf("ACMEDomains = %q, want %q", c.ACMEDomains, want)
				}
				if got, want := strings.Join(c.TrustedProxies.Strings(), " "), "10.0.0.0/8 192.0.2.7/32 2001:db8::/32 198.51.100.0/24"; got != want {
					t.Errorf("TrustedProxies = %s, want %s", got, want)
				}
				if tr := c.trust(); tr.Header != forwarded.Forwarded || !tr.Trusted(netip.MustParseAddr("::ffff:10.1.2.3")) || tr.Trusted(netip.MustParseAddr("192.0.2.8")) {
					t.Errorf("trust() = %+v", tr)
				}
			},
		},
		{
			name: "users",
			env:  map[string]string{"SWITCHBOARD_USERS": "alice:secret, 1000:pa:ss ,+4930123:x"},
			check: func(t *testing.T, c Config) {
				want := Accounts{{"alice", "secret"}, {"1000", "pa:ss"}, {"+4930123", "x"}}
				if !reflect.DeepEqual(c.Users, want) {
					t.Errorf("Users = %#v, want %#v", c.Users, want)
				}
			},
		},
		{
			name: "origins are trimmed and lower-cased",
			env:  map[string]string{"SWITCHBOARD_WS_ORIGINS": "https://App.Example.com, http://localhost:3000/"},
			check: func(t *testing.T, c Config) {
				want := OriginList{"https://app.example.com", "http://localhost:3000"}
				if !slices.Equal(c.WSOrigins, want) {
					t.Errorf("WSOrigins = %q, want %q", c.WSOrigins, want)
				}
			},
		},
		{
			name: "ws hosts are trimmed",
			env:  map[string]string{"SWITCHBOARD_WS_HOSTS": "sip.example.com, *.example.net ,203.0.113.7"},
			check: func(t *testing.T, c Config) {
				want := HostList{"sip.example.com", "*.example.net", "203.0.113.7"}
				if !slices.Equal(c.WSHosts, want) {
					t.Errorf("WSHosts = %q, want %q", c.WSHosts, want)
				}
			},
		},
		{
			name: "RTP range",
			env:  map[string]string{"SWITCHBOARD_RTP_PORTS": "40000-40099"},
			check: func(t *testing.T, c Config) {
				if c.RTPPorts != (PortRange{40000, 40099}) {
					t.Errorf("RTPPorts = %v", c.RTPPorts)
				}
			},
		},
		{
			name: "public IP, IPv4 and IPv6",
			env:  map[string]string{"SWITCHBOARD_PUBLIC_IP": "2001:db8::7"},
			check: func(t *testing.T, c Config) {
				if c.PublicIP != "2001:db8::7" {
					t.Errorf("PublicIP = %q", c.PublicIP)
				}
			},
		},
		{
			name: "log level and format in any case",
			env:  map[string]string{"SWITCHBOARD_LOG_LEVEL": "DEBUG", "SWITCHBOARD_LOG_FORMAT": "JSON"},
			check: func(t *testing.T, c Config) {
				if c.slogLevel().String() != "DEBUG" || !c.jsonLogs() {
					t.Errorf("level %v json %v", c.slogLevel(), c.jsonLogs())
				}
			},
		},
		{
			name: "domain, config file, data dir, admin token",
			env: map[string]string{
				"SWITCHBOARD_DOMAIN":      "sip.example.com",
				"SWITCHBOARD_CONFIG":      configFile,
				"SWITCHBOARD_DATA_DIR":    dir,
				"SWITCHBOARD_ADMIN_TOKEN": "0123456789abcdef0123",
			},
			check: func(t *testing.T, c Config) {
				if c.Domain != "sip.example.com" || c.ConfigFile != configFile || c.DataDir != dir || c.AdminToken != "0123456789abcdef0123" {
					t.Errorf("got %+v", c)
				}
			},
		},
	}
	tests = append(tests, struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		name: "cluster mode",
		env: map[string]string{
			"SWITCHBOARD_REDIS_URL":    "rediss://:pw@redis.internal:6380/2",
			"SWITCHBOARD_CLUSTER_HOST": "10.0.0.2",
		},
		check: func(t *testing.T, c Config) {
			if c.RedisURL != "rediss://:pw@redis.internal:6380/2" || c.ClusterHost != "10.0.0.2" {
				t.Errorf("got %q %q", c.RedisURL, c.ClusterHost)
			}
			if strings.Contains(c.LogValue().String(), "pw@") {
				t.Error("the startup log shows the Redis password")
			}
		},
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(tt.env)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if tt.check != nil {
				tt.check(t, cfg)
			}
		})
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	dir := t.TempDir()
	cert, key := transporttest.KeyPairFiles(t, dir)
	otherCert, _ := transporttest.KeyPairFiles(t, t.TempDir())
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		env     map[string]string
		wantKey string // the variable the problem names
		wantMsg string // part of the message
	}{
		{"empty domain", map[string]string{"SWITCHBOARD_DOMAIN": ""}, "SWITCHBOARD_DOMAIN", "must not be empty"},
		{"bad domain", map[string]string{"SWITCHBOARD_DOMAIN": "exa mple.com"}, "SWITCHBOARD_DOMAIN", "not a host name"},
		{"no port", map[string]string{"SWITCHBOARD_SIP_UDP": "127.0.0.1"}, "SWITCHBOARD_SIP_UDP", "not host:port"},
		{"bare IPv6", map[string]string{"SWITCHBOARD_SIP_TCP": "::1:5060"}, "SWITCHBOARD_SIP_TCP", "[::1]:5060"},
		{"port out of range", map[string]string{"SWITCHBOARD_HTTP": "127.0.0.1:70000"}, "SWITCHBOARD_HTTP", "0 to 65535"},
		{"port by name", map[string]string{"SWITCHBOARD_HTTP": "127.0.0.1:http"}, "SWITCHBOARD_HTTP", "not a number"},
		{"bad listen host", map[string]string{"SWITCHBOARD_SIP_UDP": "bad_host:5060"}, "SWITCHBOARD_SIP_UDP", "not a host name"},
		{"HTTP off", map[string]string{"SWITCHBOARD_HTTP": ""}, "SWITCHBOARD_HTTP", "must not be empty"},
		{"TCP and HTTP share a port", map[string]string{"SWITCHBOARD_SIP_TCP": "127.0.0.1:8080"}, "SWITCHBOARD_HTTP", "also the address of SWITCHBOARD_SIP_TCP"},
		{"wildcard overlaps loopback", map[string]string{"SWITCHBOARD_HTTP": ":5060"}, "SWITCHBOARD_HTTP", "own port"},
		{"TLS without certificate", map[string]string{"SWITCHBOARD_SIP_TLS": "127.0.0.1:5061"}, "SWITCHBOARD_SIP_TLS", "SWITCHBOARD_TLS_CERT and SWITCHBOARD_TLS_KEY"},
		{"certificate without key", map[string]string{"SWITCHBOARD_SIP_TLS": "127.0.0.1:5061", "SWITCHBOARD_TLS_CERT": cert}, "SWITCHBOARD_TLS_CERT", "set both or neither"},
		{"certificate without listener", map[string]string{"SWITCHBOARD_TLS_CERT": cert, "SWITCHBOARD_TLS_KEY": key}, "SWITCHBOARD_TLS_CERT", "SWITCHBOARD_SIP_TLS and SWITCHBOARD_HTTPS are empty"},
		{"HTTPS without certificate", map[string]string{"SWITCHBOARD_HTTPS": "127.0.0.1:8443"}, "SWITCHBOARD_HTTPS", "or SWITCHBOARD_ACME_DOMAINS"},
		{"HTTPS and HTTP share a port", map[string]string{"SWITCHBOARD_HTTPS": "127.0.0.1:8080", "SWITCHBOARD_TLS_CERT": cert, "SWITCHBOARD_TLS_KEY": key}, "SWITCHBOARD_HTTPS", "also the address of SWITCHBOARD_HTTP"},
		{"HTTPS not host:port", map[string]string{"SWITCHBOARD_HTTPS": "443", "SWITCHBOARD_TLS_CERT": cert, "SWITCHBOARD_TLS_KEY": key}, "SWITCHBOARD_HTTPS", "not host:port"},
		{"ACME without listener", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "sip.example.com"}, "SWITCHBOARD_ACME_DOMAINS", "SWITCHBOARD_HTTPS (e.g. :443)"},
		{"ACME name is an address", map[string]string{"SWITCHBOARD_HTTPS": ":8443", "SWITCHBOARD_ACME_DOMAINS": "192.0.2.1"}, "SWITCHBOARD_ACME_DOMAINS", "IP address"},
		{"ACME wildcard", map[string]string{"SWITCHBOARD_HTTPS": ":8443", "SWITCHBOARD_ACME_DOMAINS": "*.example.com"}, "SWITCHBOARD_ACME_DOMAINS", "wildcard"},
		{"ACME name without dot", map[string]string{"SWITCHBOARD_HTTPS": ":8443", "SWITCHBOARD_ACME_DOMAINS": "localhost"}, "SWITCHBOARD_ACME_DOMAINS", "with a dot"},
		{"ACME name twice", map[string]string{"SWITCHBOARD_HTTPS": ":8443", "SWITCHBOARD_ACME_DOMAINS": "a.example,A.example."}, "SWITCHBOARD_ACME_DOMAINS", "listed twice"},
		{"ACME empty entry", map[string]string{"SWITCHBOARD_HTTPS": ":8443", "SWITCHBOARD_ACME_DOMAINS": "a.example,"}, "SWITCHBOARD_ACME_DOMAINS", "entry 2 is empty"},
		{"ACME directory not https", map[string]string{"SWITCHBOARD_HTTPS": ":8443", "SWITCHBOARD_ACME_DOMAINS": "a.example", "SWITCHBOARD_ACME_DIRECTORY": "http://acme.example/dir"}, "SWITCHBOARD_ACME_DIRECTORY", "https:// URL"},
		{"ACME CA not PEM", map[string]string{"SWITCHBOARD_HTTPS": ":8443", "SWITCHBOARD_ACME_DOMAINS": "a.example", "SWITCHBOARD_ACME_CA": notDir}, "SWITCHBOARD_ACME_CA", "no PEM certificate"},
		{"ACME CA missing", map[string]string{"SWITCHBOARD_HTTPS": ":8443", "SWITCHBOARD_ACME_DOMAINS": "a.example", "SWITCHBOARD_ACME_CA": filepath.Join(dir, "nope.pem")}, "SWITCHBOARD_ACME_CA", "no such file"},
		{"ACME setting without names", map[string]string{"SWITCHBOARD_ACME_EMAIL": "ops@example.com"}, "SWITCHBOARD_ACME_EMAIL", "SWITCHBOARD_ACME_DOMAINS is empty"},
		{"ACME email", map[string]string{"SWITCHBOARD_HTTPS": ":8443", "SWITCHBOARD_ACME_DOMAINS": "a.example", "SWITCHBOARD_ACME_EMAIL": "ops"}, "SWITCHBOARD_ACME_EMAIL", "not an e-mail"},
		{"trusted proxy not a prefix", map[string]string{"SWITCHBOARD_TRUSTED_PROXIES": "proxy.example"}, "SWITCHBOARD_TRUSTED_PROXIES", "neither an IP address nor a CIDR"},
		{"trusted proxy bad prefix", map[string]string{"SWITCHBOARD_TRUSTED_PROXIES": "10.0.0.0/33"}, "SWITCHBOARD_TRUSTED_PROXIES", "not a CIDR prefix"},
		{"trusted proxy host bits", map[string]string{"SWITCHBOARD_TRUSTED_PROXIES": "10.1.2.3/8"}, "SWITCHBOARD_TRUSTED_PROXIES", "10.0.0.0/8"},
		{"trusted proxies: everyone", map[string]string{"SWITCHBOARD_TRUSTED_PROXIES": "0.0.0.0/0"}, "SWITCHBOARD_TRUSTED_PROXIES", "every address"},
		{"trusted proxies: empty entry", map[string]string{"SWITCHBOARD_TRUSTED_PROXIES": "10.0.0.1,"}, "SWITCHBOARD_TRUSTED_PROXIES", "entry 2"},
		{"forwarded header", map[string]string{"SWITCHBOARD_FORWARDED_HEADER": "X-Real-IP"}, "SWITCHBOARD_FORWARDED_HEADER", "the one your proxy writes"},
		{
			"key does not match certificate",
			map[string]string{"SWITCHBOARD_SIP_TLS": "127.0.0.1:5061", "SWITCHBOARD_TLS_CERT": otherCert, "SWITCHBOARD_TLS_KEY": key},
			"SWITCHBOARD_TLS_CERT", "cannot load the key pair",
		},
		{
			"missing certificate file",
			map[string]string{"SWITCHBOARD_SIP_TLS": "127.0.0.1:5061", "SWITCHBOARD_TLS_CERT": filepath.Join(dir, "nope.pem"), "SWITCHBOARD_TLS_KEY": key},
			"SWITCHBOARD_TLS_CERT", "no such file",
		},
		{"empty data dir", map[string]string{"SWITCHBOARD_DATA_DIR": ""}, "SWITCHBOARD_DATA_DIR", "must not be empty"},
		{"data dir is a file", map[string]string{"SWITCHBOARD_DATA_DIR": notDir}, "SWITCHBOARD_DATA_DIR", "not a directory"},
		{"RTP not a range", map[string]string{"SWITCHBOARD_RTP_PORTS": "20000"}, "SWITCHBOARD_RTP_PORTS", "start-end"},
		{"RTP odd start", map[string]string{"SWITCHBOARD_RTP_PORTS": "20001-29999"}, "SWITCHBOARD_RTP_PORTS", "e.g. 20000-29999"},
		{"RTP reversed", map[string]string{"SWITCHBOARD_RTP_PORTS": "30000-20000"}, "SWITCHBOARD_RTP_PORTS", "below end"},
		{"RTP port 0", map[string]string{"SWITCHBOARD_RTP_PORTS": "0-100"}, "SWITCHBOARD_RTP_PORTS", "1 to 65535"},
		{"RTP too high", map[string]string{"SWITCHBOARD_RTP_PORTS": "20000-65536"}, "SWITCHBOARD_RTP_PORTS", "1 to 65535"},
		{"RTP empty", map[string]string{"SWITCHBOARD_RTP_PORTS": ""}, "SWITCHBOARD_RTP_PORTS", "must not be empty"},
		{"RTP range holds SIP port", map[string]string{"SWITCHBOARD_RTP_PORTS": "5000-5999"}, "SWITCHBOARD_RTP_PORTS", "SIP UDP port 5060"},
		{"public IP is a name", map[string]string{"SWITCHBOARD_PUBLIC_IP": "gw.example.com"}, "SWITCHBOARD_PUBLIC_IP", "not an IP address"},
		{"public IP unspecified", map[string]string{"SWITCHBOARD_PUBLIC_IP": "0.0.0.0"}, "SWITCHBOARD_PUBLIC_IP", "cannot be announced"},
		{"public IP with zone", map[string]string{"SWITCHBOARD_PUBLIC_IP": "fe80::1%eth0"}, "SWITCHBOARD_PUBLIC_IP", "zone"},
		{"user without password", map[string]string{"SWITCHBOARD_USERS": "alice"}, "SWITCHBOARD_USERS", "no colon"},
		{"empty password", map[string]string{"SWITCHBOARD_USERS": "alice:"}, "SWITCHBOARD_USERS", "empty password"},
		{"empty user", map[string]string{"SWITCHBOARD_USERS": ":secret"}, "SWITCHBOARD_USERS", "no user"},
		{"stray comma", map[string]string{"SWITCHBOARD_USERS": "alice:a,,bob:b"}, "SWITCHBOARD_USERS", "entry 2 is empty"},
		{"user twice", map[string]string{"SWITCHBOARD_USERS": "alice:a,alice:b"}, "SWITCHBOARD_USERS", `"alice" is listed twice`},
		{"user with @", map[string]string{"SWITCHBOARD_USERS": "alice@example.com:a"}, "SWITCHBOARD_USERS", "only letters"},
		{"origin with path", map[string]string{"SWITCHBOARD_WS_ORIGINS": "https://app.example.com/phone"}, "SWITCHBOARD_WS_ORIGINS", "scheme://host"},
		{"origin without scheme", map[string]string{"SWITCHBOARD_WS_ORIGINS": "app.example.com"}, "SWITCHBOARD_WS_ORIGINS", "http:// or https://"},
		{"origin wildcard", map[string]string{"SWITCHBOARD_WS_ORIGINS": "*"}, "SWITCHBOARD_WS_ORIGINS", "http:// or https://"},
		{"origin empty entry", map[string]string{"SWITCHBOARD_WS_ORIGINS": "https://a.example,"}, "SWITCHBOARD_WS_ORIGINS", "entry 2: empty origin"},
		{"ws host with port", map[string]string{"SWITCHBOARD_WS_HOSTS": "sip.example.com:443"}, "SWITCHBOARD_WS_HOSTS", "any port is allowed"},
		{"ws host wildcard", map[string]string{"SWITCHBOARD_WS_HOSTS": "*"}, "SWITCHBOARD_WS_HOSTS", "a host name"},
		{"ws host empty entry", map[string]string{"SWITCHBOARD_WS_HOSTS": "sip.example.com,"}, "SWITCHBOARD_WS_HOSTS", "entry 2 is empty"},
		{"config file missing", map[string]string{"SWITCHBOARD_CONFIG": filepath.Join(dir, "nope.conf")}, "SWITCHBOARD_CONFIG", "no such file"},
		{"config file is a directory", map[string]string{"SWITCHBOARD_CONFIG": dir}, "SWITCHBOARD_CONFIG", "not a regular file"},
		{"log level", map[string]string{"SWITCHBOARD_LOG_LEVEL": "verbose"}, "SWITCHBOARD_LOG_LEVEL", "debug, info, warn or error"},
		{"log level empty", map[string]string{"SWITCHBOARD_LOG_LEVEL": ""}, "SWITCHBOARD_LOG_LEVEL", "not a level"},
		{"log format", map[string]string{"SWITCHBOARD_LOG_FORMAT": "logfmt"}, "SWITCHBOARD_LOG_FORMAT", "text or json"},
		{"negative drain timeout", map[string]string{"SWITCHBOARD_DRAIN_TIMEOUT": "-1s"}, "SWITCHBOARD_DRAIN_TIMEOUT", "out of range"},
		{"negative reconnect grace", map[string]string{"SWITCHBOARD_RECONNECT_GRACE": "-1s"}, "SWITCHBOARD_RECONNECT_GRACE", "out of range"},
		{"reconnect grace too long", map[string]string{"SWITCHBOARD_RECONNECT_GRACE": "11m"}, "SWITCHBOARD_RECONNECT_GRACE", "out of range"},
		{"drain timeout without unit", map[string]string{"SWITCHBOARD_DRAIN_TIMEOUT": "20"}, "SWITCHBOARD_DRAIN_TIMEOUT", "missing unit"},
		{"no WebSocket cap", map[string]string{"SWITCHBOARD_WS_MAX_CONNS": "0"}, "SWITCHBOARD_WS_MAX_CONNS", "at least 1"},
		{"empty WebSocket cap", map[string]string{"SWITCHBOARD_WS_MAX_CONNS_PER_IP": ""}, "SWITCHBOARD_WS_MAX_CONNS_PER_IP", "at least 1"},
		{"negative TCP cap", map[string]string{"SWITCHBOARD_TCP_MAX_CONNS": "-5"}, "SWITCHBOARD_TCP_MAX_CONNS", "at least 1"},
		{"TCP cap not a number", map[string]string{"SWITCHBOARD_TCP_MAX_CONNS_PER_IP": "lots"}, "SWITCHBOARD_TCP_MAX_CONNS_PER_IP", "invalid syntax"},
		{"idle timeout too short", map[string]string{"SWITCHBOARD_UNREGISTERED_IDLE_TIMEOUT": "100ms"}, "SWITCHBOARD_UNREGISTERED_IDLE_TIMEOUT", "out of range"},
		{"idle timeout too long", map[string]string{"SWITCHBOARD_UNREGISTERED_IDLE_TIMEOUT": "1h"}, "SWITCHBOARD_UNREGISTERED_IDLE_TIMEOUT", "out of range"},
		{"sip trace not a bool", map[string]string{"SWITCHBOARD_SIP_TRACE": "maybe"}, "SWITCHBOARD_SIP_TRACE", "invalid syntax"},
		{"short admin token", map[string]string{"SWITCHBOARD_ADMIN_TOKEN": "hunter2"}, "SWITCHBOARD_ADMIN_TOKEN", "too short"},
		{"admin token with space", map[string]string{"SWITCHBOARD_ADMIN_TOKEN": "0123456789 abcdef0123"}, "SWITCHBOARD_ADMIN_TOKEN", "spaces"},
		{"ICE port in the RTP range", map[string]string{"SWITCHBOARD_ICE_PORT": "20002"}, "SWITCHBOARD_ICE_PORT", "inside SWITCHBOARD_RTP_PORTS"},
		{"ICE port on SIP UDP", map[string]string{"SWITCHBOARD_ICE_PORT": "5060"}, "SWITCHBOARD_ICE_PORT", "port of SWITCHBOARD_SIP_UDP"},
		{"ICE-TCP port on HTTP", map[string]string{"SWITCHBOARD_ICE_PORT": "8080"}, "SWITCHBOARD_ICE_PORT", "port of SWITCHBOARD_HTTP"},
		{"ICE port too high", map[string]string{"SWITCHBOARD_ICE_PORT": "70000"}, "SWITCHBOARD_ICE_PORT", "not a port"},
		{"media coalesce above the cap", map[string]string{"SWITCHBOARD_MEDIA_COALESCE": "5ms"}, "SWITCHBOARD_MEDIA_COALESCE", "out of range"},
		{"media coalesce negative", map[string]string{"SWITCHBOARD_MEDIA_COALESCE": "-1ms"}, "SWITCHBOARD_MEDIA_COALESCE", "out of range"},
		{"negative call cap", map[string]string{"SWITCHBOARD_MAX_CALLS": "-1"}, "SWITCHBOARD_MAX_CALLS", "not a cap"},
		{"TURN without credentials", map[string]string{"SWITCHBOARD_TURN_URLS": "turn:turn.example.com"}, "SWITCHBOARD_TURN_URLS", "no credentials"},
		{"TURN bad URL", map[string]string{"SWITCHBOARD_TURN_URLS": "https://turn.example.com", "SWITCHBOARD_TURN_SECRET": "0123456789abcdef0123"}, "SWITCHBOARD_TURN_URLS", "not a STUN or TURN URL"},
		{"TURN secret and static", map[string]string{"SWITCHBOARD_TURN_URLS": "turn:t.example", "SWITCHBOARD_TURN_SECRET": "0123456789abcdef0123", "SWITCHBOARD_TURN_USERNAME": "u", "SWITCHBOARD_TURN_PASSWORD": "pass-word-x"}, "SWITCHBOARD_TURN_SECRET", "not both"},
		{"TURN username alone", map[string]string{"SWITCHBOARD_TURN_URLS": "turn:t.example", "SWITCHBOARD_TURN_USERNAME": "u"}, "SWITCHBOARD_TURN_USERNAME", "go together"},
		{"TURN secret without TURN URL", map[string]string{"SWITCHBOARD_TURN_URLS": "stun:t.example", "SWITCHBOARD_TURN_SECRET": "0123456789abcdef0123"}, "SWITCHBOARD_TURN_URLS", "no turn: or turns: URL"},
		{"TURN secret short", map[string]string{"SWITCHBOARD_TURN_URLS": "turn:t.example", "SWITCHBOARD_TURN_SECRET": "hunter2"}, "SWITCHBOARD_TURN_SECRET", "too short"},
		{"TURN TTL too long", map[string]string{"SWITCHBOARD_TURN_URLS": "turn:t.example", "SWITCHBOARD_TURN_SECRET": "0123456789abcdef0123", "SWITCHBOARD_TURN_TTL": "720h"}, "SWITCHBOARD_TURN_TTL", "out of range"},
		{"Redis URL not one", map[string]string{"SWITCHBOARD_REDIS_URL": "http://user:Pw-SECRET-1@redis.example:6379"}, "SWITCHBOARD_REDIS_URL", "not a Redis URL"},
		{"cluster without SIP TCP", map[string]string{"SWITCHBOARD_REDIS_URL": "redis://127.0.0.1:6379/0", "SWITCHBOARD_SIP_TCP": ""}, "SWITCHBOARD_REDIS_URL", "needs SWITCHBOARD_SIP_TCP"},
		{"cluster host without Redis", map[string]string{"SWITCHBOARD_CLUSTER_HOST": "10.0.0.2"}, "SWITCHBOARD_CLUSTER_HOST", "REDIS_URL is empty"},
		{"cluster host with port", map[string]string{"SWITCHBOARD_REDIS_URL": "redis://127.0.0.1:6379", "SWITCHBOARD_CLUSTER_HOST": "10.0.0.2:5060"}, "SWITCHBOARD_CLUSTER_HOST", "no port"},
		{"cluster host unspecified", map[string]string{"SWITCHBOARD_REDIS_URL": "redis://127.0.0.1:6379", "SWITCHBOARD_CLUSTER_HOST": "0.0.0.0"}, "SWITCHBOARD_CLUSTER_HOST", "cannot be reached"},
		{"cluster host is the domain", map[string]string{"SWITCHBOARD_REDIS_URL": "redis://127.0.0.1:6379", "SWITCHBOARD_CLUSTER_HOST": "localhost"}, "SWITCHBOARD_CLUSTER_HOST", "every instance serves"},
		{"GC percent empty", map[string]string{"SWITCHBOARD_GC_PERCENT": ""}, "SWITCHBOARD_GC_PERCENT", "0 is out of range"},
		{"GC percent too high", map[string]string{"SWITCHBOARD_GC_PERCENT": "10001"}, "SWITCHBOARD_GC_PERCENT", "out of range"},
		{"GC percent off", map[string]string{"SWITCHBOARD_GC_PERCENT": "off"}, "SWITCHBOARD_GC_PERCENT", "invalid syntax"},
		{"memory limit tiny", map[string]string{"SWITCHBOARD_MEMORY_LIMIT": "1MiB"}, "SWITCHBOARD_MEMORY_LIMIT", "below 64MiB"},
		{"memory limit no size", map[string]string{"SWITCHBOARD_MEMORY_LIMIT": "1GB"}, "SWITCHBOARD_MEMORY_LIMIT", "not a size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(tt.env)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("loadConfig(%q) = %v, want a *ConfigError", tt.env, err)
			}
			if len(ce.Problems) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ce.Problems), err)
			}
			var fe *FieldError
			if !errors.As(ce.Problems[0], &fe) {
				t.Fatalf("problem %v is not a *FieldError", ce.Problems[0])
			}
			if fe.Key != tt.wantKey {
				t.Errorf("problem names %s, want %s: %v", fe.Key, tt.wantKey, fe)
			}
			if !strings.Contains(fe.Error(), tt.wantMsg) {
				t.Errorf("problem %q does not say %q", fe, tt.wantMsg)
			}
			for k, v := range tt.env {
				secret := strings.Contains(k, "SECRET") || strings.Contains(k, "PASSWORD") || strings.Contains(k, "TOKEN") || strings.Contains(k, "REDIS_URL")
				if secret && v != "" && strings.Contains(err.Error(), v) {
					t.Errorf("the error shows the value of %s: %v", k, err)
				}
			}
		})
	}
}

// TestLoadConfigReportsAll checks that one run names every broken
// variable, whether the fault is found while parsing or while validating.
func TestLoadConfigReportsAll(t *testing.T) {
	_, err := loadConfig(map[string]string{
		"SWITCHBOARD_RTP_PORTS":  "1-2",
		"SWITCHBOARD_USERS":      "alice",
		"SWITCHBOARD_LOG_FORMAT": "xml",
		"SWITCHBOARD_HTTP":       "nowhere",
	})
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *ConfigError", err)
	}
	var keys []string
	for _, p := range ce.Problems {
		var fe *FieldError
		if errors.As(p, &fe) {
			keys = append(keys, fe.Key)
		}
	}
	slices.Sort(keys)
	want := []string{"SWITCHBOARD_HTTP", "SWITCHBOARD_LOG_FORMAT", "SWITCHBOARD_RTP_PORTS", "SWITCHBOARD_USERS"}
	if !slices.Equal(keys, want) {
		t.Errorf("problems name %q, want %q; error:\n%v", keys, want, err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "invalid configuration:\n  ") {
		t.Errorf("message %q does not start with a heading and indented problems", msg)
	}
}

// TestConfigSecretsStayOut checks that no error or log view of the
// settings shows a password or the admin token.
func TestConfigSecretsStayOut(t *testing.T) {
	const pass, token = "pw-Zq81", "tok-0123456789abcdef"
	for _, users := range []string{"alice:" + pass + ",alice:" + pass, "alice:" + pass + ",bo b:" + pass, "alice" + pass} {
		_, err := loadConfig(map[string]string{"SWITCHBOARD_USERS": users, "SWITCHBOARD_ADMIN_TOKEN": "short" + pass})
		if err == nil {
			t.Fatalf("USERS=%q: no error", users)
		}
		if strings.Contains(err.Error(), pass) {
			t.Errorf("USERS=%q: error shows the password: %v", users, err)
		}
	}

	cfg, err := loadConfig(map[string]string{"SWITCHBOARD_USERS": "alice:" + pass, "SWITCHBOARD_ADMIN_TOKEN": token})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{cfg.LogValue().String(), cfg.Users[0].String()} {
		if strings.Contains(s, pass) || strings.Contains(s, token) {
			t.Errorf("%q shows a secret", s)
		}
	}
}

func TestUnknownSettings(t *testing.T) {
	got := unknownSettings(map[string]string{
		"SWITCHBOARD_SIP_UPD": "x",
		"SWITCHBOARD_SIP_UDP": "x",
		"SWITCHBOARD_AAA":     "",
		"HOME":                "/root",
	})
	want := []string{"SWITCHBOARD_AAA", "SWITCHBOARD_SIP_UPD"}
	if !slices.Equal(got, want) {
		t.Errorf("unknownSettings = %q, want %q", got, want)
	}
}

func TestPortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		wantErr bool
	}{
		{"20000-29999", PortRange{20000, 29999}, false},
		{"2-3", PortRange{2, 3}, false},
		{"65534-65535", PortRange{65534, 65535}, false},
		{"20000-20000", PortRange{}, true},
		{"20001-29999", PortRange{}, true},
		{"-1-5", PortRange{}, true},
		{"a-b", PortRange{}, true},
		{" 20000-29999", PortRange{}, true},
		{"20000 - 29999", PortRange{}, true},
		{"20000-29999-1", PortRange{}, true},
		{"", PortRange{}, true},
	}
	for _, tt := range tests {
		var r PortRange
		err := r.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.wantErr || r != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v, error %v", tt.in, r, err, tt.want, tt.wantErr)
		}
	}
	r := PortRange{20000, 20009}
	if !r.Contains(20000) || !r.Contains(20009) || r.Contains(19999) || r.Contains(20010) {
		t.Errorf("Contains is wrong at the edges of %v", r)
	}
}

func TestListenAddrHelpers(t *testing.T) {
	loopback := map[string]bool{
		"127.0.0.1:5060": true,
		"[::1]:5060":     true,
		"localhost:8080": true,
		"127.8.9.1:1":    true,
		":5060":          false,
		"0.0.0.0:5060":   false,
		"192.0.2.1:5060": false,
		"example.com:80": false,
		"garbage":        false,
	}
	for addr, want := range loopback {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
	same := []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:5060", "127.0.0.1:5060", true},
		{":5060", "127.0.0.1:5060", true},
		{"[::]:5060", "127.0.0.1:5060", true},
		{"127.0.0.1:5060", "127.0.0.2:5060", false},
		{"127.0.0.1:5060", "127.0.0.1:5061", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
	}
	for _, tt := range same {
		if got := sameSocket(tt.a, tt.b); got != tt.want {
			t.Errorf("sameSocket(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestREADMEDocumentsEveryVariable keeps the README's configuration table
// and Config in step: every variable is listed, with its default.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := make(map[string]string) // variable -> default column
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) < 4 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if strings.HasPrefix(name, envPrefix) {
			rows[name] = strings.Trim(strings.TrimSpace(cells[2]), "`")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		key := envKey(f)
		def, ok := rows[key]
		if !ok {
			t.Errorf("README.md has no row for %s", key)
			continue
		}
		want := f.Tag.Get("envDefault")
		if want == "" {
			want = "empty"
		}
		if def != want {
			t.Errorf("README.md gives %s the default %q, the code %q", key, def, want)
		}
		delete(rows, key)
	}
	for key := range rows {
		t.Errorf("README.md documents %s, which Config does not read", key)
	}
}
