package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// certSource hands every TLS listener of the binary (HTTPS and SIP TLS)
// its certificate: from the files of SWITCHBOARD_TLS_CERT and _KEY, read
// again on SIGHUP, or from ACME for the names of SWITCHBOARD_ACME_DOMAINS,
// or both: ACME then serves its names (and its challenges), the files
// every other handshake.
type certSource struct {
	certFile, keyFile string
	// file is the certificate of the files; swapped whole by reload, so a
	// handshake sees the old one or the new one, and connections up are
	// not touched.
	file atomic.Pointer[tls.Certificate]

	acme      *autocert.Manager // nil without ACME
	acmeNames []string          // lower case, the first for handshakes without a name
	log       *slog.Logger
}

// newCertSource returns the certificate source of cfg, or nil when cfg
// asks for no TLS listener.
func newCertSource(cfg Config, logger *slog.Logger) (*certSource, error) {
	if cfg.SIPTLS == "" && cfg.HTTPS == "" {
		return nil, nil
	}
	c := &certSource{certFile: cfg.TLSCert, keyFile: cfg.TLSKey, log: logger}
	if c.certFile != "" {
		if err := c.reload(); err != nil {
			return nil, err
		}
	}
	if len(cfg.ACMEDomains) > 0 {
		client := &acme.Client{DirectoryURL: cfg.ACMEDirectory, UserAgent: "switchboard/" + version}
		if client.DirectoryURL == "" {
			client.DirectoryURL = autocert.DefaultACMEDirectory
		}
		if cfg.ACMECA != "" {
			pool, err := loadCertPool(cfg.ACMECA)
			if err != nil {
				return nil, fmt.Errorf("acme ca: %w", err)
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			client.HTTPClient = &http.Client{Transport: tr}
		}
		c.acmeNames = slices.Clone(cfg.ACMEDomains)
		c.acme = &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			Cache:      loggedCache{autocert.DirCache(filepath.Join(cfg.DataDir, "acme")), logger},
			HostPolicy: autocert.HostWhitelist(c.acmeNames...),
			Client:     client,
			Email:      cfg.ACMEEmail,
		}
	}
	return c, nil
}

// reload reads the certificate files again. On error the certificate in
// use stays.
func (c *certSource) reload() error {
	if c.certFile == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load tls certificate: %w", err)
	}
	old := c.file.Swap(&cert)
	if old != nil {
		c.log.Info("tls certificate reloaded", "file", c.certFile, "subject", cert.Leaf.Subject.String(),
			"names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// errNoCertificate is the handshake error when no certificate fits.
var errNoCertificate = errors.New("no certificate for this server name")

// GetCertificate is the tls.Config hook of every TLS listener.
func (c *certSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	file := c.file.Load()
	if c.acme != nil {
		name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
		switch {
		case len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto,
			slices.Contains(c.acmeNames, name):
			// A TLS-ALPN-01 challenge, or one of our ACME names.
			return c.acme.GetCertificate(hello)
		case file == nil:
			// A phone that dials an address sends no name: it gets the
			// certificate of the first name.
			h := *hello
			h.ServerName = c.acmeNames[0]
			return c.acme.GetCertificate(&h)
		}
	}
	if file == nil {
		return nil, errNoCertificate
	}
	return file, nil
}

// tlsConfig returns the server config of a TLS listener. The HTTPS one
// speaks HTTP/1.1 (WebSocket upgrades need it) and ACME's TLS-ALPN-01.
func (c *certSource) tlsConfig(nextProtos ...string) *tls.Config {
	if c.acme != nil && len(nextProtos) > 0 {
		nextProtos = append(nextProtos, acme.ALPNProto)
	}
	return &tls.Config{GetCertificate: c.GetCertificate, NextProtos: nextProtos, MinVersion: tls.VersionTLS12}
}

// httpHandler wraps the handler of the plain HTTP listener: with ACME, it
// answers HTTP-01 challenges under /.well-known/acme-challenge/.
func (c *certSource) httpHandler(next http.Handler) http.Handler {
	if c == nil || c.acme == nil {
		return next
	}
	h := c.acme.HTTPHandler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// autocert checks the Host header whole against its names, but a
		// validation server may name the port ("sip.example.com:80", as
		// pebble does).
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			if host, _, err := net.SplitHostPort(r.Host); err == nil {
				r2 := *r
				r2.Host = host
				r = &r2
			}
		}
		h.ServeHTTP(w, r)
	})
}

// loggedCache logs the certificates ACME obtains as they are cached.
type loggedCache struct {
	autocert.Cache
	log *slog.Logger
}

func (c loggedCache) Put(ctx context.Context, key string, data []byte) error {
	err := c.Cache.Put(ctx, key, data)
	// Keys: "name" and "name+rsa" are certificates; "+token", "+http-01"
	// and the account key are the challenges' and the account's.
	if name, rest, _ := strings.Cut(key, "+"); rest == "" || rest == "rsa" {
		if err != nil {
			c.log.Error("acme: certificate obtained but not cached", "name", name, "err", err)
		} else {
			c.log.Info("acme: certificate obtained", "name", name, "rsa", rest == "rsa")
		}
	}
	return err
}
