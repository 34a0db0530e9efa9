package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/forwarded"
)

// webAddrs are where the web listeners are bound, which the SIP side
// needs for its WebSocket endpoints.
type webAddrs struct {
	http  netip.AddrPort
	https netip.AddrPort // invalid when HTTPS is off
}

// addrPort returns a listener's address; the zero value for nil.
func addrPort(ln net.Listener) netip.AddrPort {
	if ln == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(ln.Addr().String())
	return ap
}

// newWebServer returns the HTTP server of one web listener.
func newWebServer(h http.Handler, logger *slog.Logger) *http.Server {
	var protocols http.Protocols
	// HTTP/1.1 only: browsers open WebSockets over it, and the
	// WebSocket library needs a connection it can hijack.
	protocols.SetHTTP1(true)
	return &http.Server{
		Handler: h,
		// No ReadTimeout or WriteTimeout: /ws connections live as long as a
		// registration. Slow clients are bounded by the header timeout,
		// which bounds TLS handshakes too.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		Protocols:         &protocols,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// unredirected are the paths the plain HTTP listener serves itself when
// HTTPS is on: monitoring reaches them without certificates.
var unredirected = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// redirectToHTTPS answers the requests of the plain HTTP listener when
// HTTPS is on with 308 to the same path and query on the HTTPS port;
// except for the paths of unredirected, and for requests that a trusted
// proxy says reached it over TLS: a proxy that terminates TLS and
// forwards to this listener must not be sent round in circles.
func redirectToHTTPS(next http.Handler, httpsPort uint16, trust *forwarded.Trust) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if unredirected[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := trust.Client(r); err == nil && c.TLS {
			next.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = trimBrackets(host)
		if host == "" || !validHost(host) {
			writeText(w, http.StatusBadRequest, "a Host header naming this server is needed to redirect to HTTPS\n")
			return
		}
		target := "https://" + net.JoinHostPort(host, strconv.Itoa(int(httpsPort)))
		if httpsPort == 443 {
			target = strings.TrimSuffix(target, ":443")
		}
		w.Header().Set("Location", target+r.URL.RequestURI())
		writeText(w, http.StatusPermanentRedirect, "this server is served over HTTPS\n")
	})
}

func trimBrackets(host string) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		return host[1 : len(host)-1]
	}
	return host
}
