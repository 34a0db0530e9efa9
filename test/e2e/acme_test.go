package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/switchboard/switchboard/internal/netns"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// The gateway gets its certificate from a real ACME server on loopback:
// Let's Encrypt's test server pebble, built from its Go module at a pinned
// release. In a network namespace of its own, the gateway listens on
// acmeIP ports 80 and 443, as on a server; a DNS server of the test makes
// acmeName resolve there for pebble, which validates the challenge
// against the gateway, then issues.

// pebbleVersion is the pinned release of pebble.
const pebbleVersion = "v2.10.3"

const (
	acmeName = "sip.switchboard.test"
	acmeIP   = "192.0.2.10" // TEST-NET-1, on loopback in the namespace
	// acmeWait bounds getting a certificate: pebble validates at once
	// (PEBBLE_VA_NOSLEEP) and asks for a retry after a second.
	acmeWait = 40 * time.Second
)

// TestACMETLSALPN: the certificate is obtained over TLS-ALPN-01 (pebble's
// HTTP-01 port is one nothing listens on), serves HTTPS and SIP TLS, and
// is cached: a gateway started again on the same data directory serves
// it with the ACME server gone.
func TestACMETLSALPN(t *testing.T) {
	acmeTest(t, 81, 443, func(t *testing.T, s *acmeSetup) {
		leaf := s.handshake(t, net.JoinHostPort(acmeIP, "443"), acmeName)
		s.checkGateway(t, leaf)

		s.g.stop()
		s.pebble.stop(t)
		s.startGateway(t)
		if again := s.handshake(t, net.JoinHostPort(acmeIP, "443"), acmeName); !again.Equal(leaf) {
			t.Error("after a restart without the ACME server, the gateway serves another certificate than the one it cached")
		}
	})
}

// TestACMEHTTP01: with nothing on pebble's TLS-ALPN-01 port, the
// certificate is obtained over HTTP-01, answered by the plain listener,
// which otherwise redirects to HTTPS.
func TestACMEHTTP01(t *testing.T) {
	acmeTest(t, 80, 444, func(t *testing.T, s *acmeSetup) {
		leaf := s.handshake(t, net.JoinHostPort(acmeIP, "443"), acmeName)
		s.checkGateway(t, leaf)
	})
}

// acmeSetup is an ACME test's world: pebble, the DNS, the gateway.
type acmeSetup struct {
	dir     string
	ca      *transporttest.CA // of pebble's own HTTPS listener
	pebble  *pebbleServer
	roots   *x509.CertPool // pebble's issuing root
	dataDir string
	g       *gateway
}

// acmeTest builds pebble (outside the namespace: building needs the
// module proxy), then runs body inside a namespace where pebble validates
// HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort of acmeIP, and the
// gateway runs there with ACME.
func acmeTest(t *testing.T, httpPort, tlsPort int, body func(t *testing.T, s *acmeSetup)) {
	var bin string
	if !netns.Inside() {
		bin = pebbleBinary(t)
	}
	isolated(t, netns.Options{Addrs: []string{acmeIP + "/32"}, Env: []string{"SWITCHBOARD_E2E_PEBBLE=" + bin}}, func(t *testing.T) {
		s := &acmeSetup{dir: t.TempDir(), ca: transporttest.NewCA(t)}
		dns := serveDNS(t, acmeName, netip.MustParseAddr(acmeIP))
		s.pebble = startPebble(t, os.Getenv("SWITCHBOARD_E2E_PEBBLE"), s.dir, s.ca, dns, httpPort, tlsPort)
		s.roots = s.pebble.roots(t)
		s.dataDir = filepath.Join(s.dir, "data")
		s.startGateway(t)
		body(t, s)
	})
}

// startGateway starts the gateway on acmeIP, HTTP on 80, HTTPS on 443 and
// SIP TLS on 5061, its certificate from pebble.
func (s *acmeSetup) startGateway(t *testing.T) {
	t.Helper()
	caFile := filepath.Join(s.dir, "pebble-ca.pem")
	s.ca.WriteFile(t, caFile)
	s.g = startGateway(t, gatewayOptions{host: acmeIP, httpPort: 80, dataDir: s.dataDir, env: map[string]string{
		"SWITCHBOARD_HTTPS":          net.JoinHostPort(acmeIP, "443"),
		"SWITCHBOARD_SIP_TLS":        net.JoinHostPort(acmeIP, "5061"),
		"SWITCHBOARD_ACME_DOMAINS":   acmeName,
		"SWITCHBOARD_ACME_DIRECTORY": s.pebble.directory,
		"SWITCHBOARD_ACME_CA":        caFile,
		"SWITCHBOARD_ACME_EMAIL":     "ops@switchboard.test",
	}})
	s.g.httpsPort = 443
}

// handshake connects to addr over TLS for serverName ("" sends none),
// trusting pebble's root, and returns the certificate the gateway
// presented. The first handshake for a name waits for the certificate to
// be issued; the server bounds a handshake at 10 s, so it is tried again
// within acmeWait.
func (s *acmeSetup) handshake(t *testing.T, addr, serverName string) *x509.Certificate {
	t.Helper()
	cfg := &tls.Config{RootCAs: s.roots, ServerName: serverName}
	if serverName == "" {
		// Without a name there is nothing to verify it for: check the
		// chain alone.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			opts := x509.VerifyOptions{Roots: s.roots, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		}
	}
	deadline := time.Now().Add(acmeWait)
	for {
		d := &tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		c, err := d.DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			defer c.Close()
			return c.(*tls.Conn).ConnectionState().PeerCertificates[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS to %s for %q: %v", addr, serverName, err)
		}
		t.Logf("TLS to %s for %q: %v; trying again", addr, serverName, err)
		select {
		case <-s.g.exited:
			t.Fatalf("the gateway exited: %v", s.g.err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkGateway checks what the gateway serves with the certificate leaf
// pebble issued: HTTPS, the redirect of plain HTTP, and SIP TLS with and
// without a server name.
func (s *acmeSetup) checkGateway(t *testing.T, leaf *x509.Certificate) {
	t.Helper()
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != acmeName {
		t.Errorf("certificate for %q, want %s", leaf.DNSNames, acmeName)
	}
	if !strings.Contains(readFile(s.g.logPath), "acme: certificate obtained") {
		t.Error("the gateway did not log the certificate it obtained")
	}
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.roots},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				var d net.Dialer
				return d.DialContext(ctx, network, net.JoinHostPort(acmeIP, port))
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	defer client.CloseIdleConnections()
	res, err := client.Get("https://" + acmeName + "/config.json")
	if err != nil {
		t.Fatalf("GET https://%s/config.json: %v", acmeName, err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("GET https://%s/config.json: %d", acmeName, res.StatusCode)
	}
	res, err = client.Get("http://" + acmeName + "/call?to=bob")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if want := "https://" + acmeName + "/call?to=bob"; res.StatusCode != 308 || res.Header.Get("Location") != want {
		t.Errorf("GET http://%s/call?to=bob: %d %q, want 308 %s", acmeName, res.StatusCode, res.Header.Get("Location"), want)
	}
	sipTLS := net.JoinHostPort(acmeIP, "5061")
	if got := s.handshake(t, sipTLS, acmeName); !got.Equal(leaf) {
		t.Error("SIP TLS presents another certificate than HTTPS")
	}
	if got := s.handshake(t, sipTLS, ""); !got.Equal(leaf) {
		t.Error("SIP TLS without a server name does not get the certificate of the first ACME name")
	}
}

// pebbleBinary returns pebble built at pebbleVersion, from a cache under
// GOCACHE, building it there on first use.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goBin, "env", "GOCACHE").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == "off" {
		t.Fatalf("go env GOCACHE: %q, %v: pebble is built into the Go build cache", out, err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "switchboard-e2e", "pebble-"+pebbleVersion)
	bin := filepath.Join(dir, "pebble")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o100 != 0 {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", "github.com/letsencrypt/pebble/v2/cmd/pebble@"+pebbleVersion)
	cmd.Dir = tmp // outside this module: pebble's own go.mod decides its dependencies
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building pebble %s (needs the Go module proxy once; then it is cached in %s): %v\n%s", pebbleVersion, dir, err, b)
	}
	// Renamed into place, so that a build cut short leaves nothing half
	// written under the name the next run trusts.
	if err := os.Rename(filepath.Join(tmp, "pebble"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// pebbleServer is a running pebble.
type pebbleServer struct {
	directory string // the ACME directory URL
	mgmt      string // host:port of its management API
	client    *http.Client
	cmd       *exec.Cmd
	log       string
	exited    chan struct{}
	stopped   bool
}

// startPebble runs pebble on loopback with a certificate of ca for its
// own listeners, resolving names with the DNS server at dns, validating
// HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort; it waits until the
// directory answers, and stops pebble when the test ends.
func startPebble(t *testing.T, bin, dir string, ca *transporttest.CA, dns string, httpPort, tlsPort int) *pebbleServer {
	t.Helper()
	if bin == "" {
		t.Fatal("no pebble binary: SWITCHBOARD_E2E_PEBBLE is not set in the namespace")
	}
	cert, key := ca.IssueFiles(t, t.TempDir(), "127.0.0.1", "localhost")
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "tcp", "127.0.0.1")))
	mgmt := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "tcp", "127.0.0.1")))
	var config struct {
		Pebble map[string]any `json:"pebble"`
	}
	config.Pebble = map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    cert,
		"privateKey":                     key,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
	}
	b, _ := json.Marshal(config)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pebbleServer{
		directory: "https://" + listen + "/dir",
		mgmt:      mgmt,
		client:    &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}, Timeout: 5 * time.Second},
		log:       filepath.Join(dir, "pebble.log"),
		exited:    make(chan struct{}),
	}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	p.cmd = exec.Command(bin, "-config", cfgFile, "-dnsserver", dns)
	// No random waits before validating, no nonces refused for practice:
	// the test is about the gateway, not the client's retries.
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start pebble: %v", err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("--- pebble log ---\n%s", tail(readFile(p.log), 64<<10))
		}
	})
	deadline := time.Now().Add(readyTimeout)
	for {
		res, err := p.client.Get(p.directory)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p
			}
			err = errors.New(res.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble's directory %s does not answer within %v: %v\n%s", p.directory, readyTimeout, err, readFile(p.log))
		}
		select {
		case <-p.exited:
			t.Fatalf("pebble exited:\n%s", readFile(p.log))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// roots returns the root that pebble issues under (its management API
// serves it).
func (p *pebbleServer) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	res, err := p.client.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble's root: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	pool := x509.NewCertPool()
	if err != nil || res.StatusCode != 200 || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble's root: %d %v\n%s", res.StatusCode, err, b)
	}
	return pool
}

// stop ends pebble and waits for it.
func (p *pebbleServer) stop(t *testing.T) {
	if p.stopped {
		return
	}
	p.stopped = true
	p.client.CloseIdleConnections()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.exited
		t.Error("pebble did not end on SIGTERM")
	}
}

// serveDNS answers DNS queries over TCP on loopback, as pebble's
// -dnsserver asks them: A for name is addr, any other question about
// name has no answer, other names do not exist. It returns the server's
// address and stops when the test ends.
func serveDNS(t *testing.T, name string, addr netip.Addr) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fqdn := dnsmessage.MustNewName(name + ".")
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				for {
					c.SetDeadline(time.Now().Add(acmeWait))
					var n uint16
					if binary.Read(c, binary.BigEndian, &n) != nil {
						return
					}
					q := make([]byte, n)
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					a, err := dnsAnswer(q, fqdn, addr)
					if err != nil {
						t.Logf("dns: %v", err)
						return
					}
					if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(a)))); err != nil {
						return
					}
					if _, err := c.Write(a); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dnsAnswer answers the query q.
func dnsAnswer(q []byte, name dnsmessage.Name, addr netip.Addr) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	question, err := p.Question()
	if err != nil {
		return nil, fmt.Errorf("question: %w", err)
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	ours := bytes.EqualFold([]byte(question.Name.String()), []byte(name.String()))
	if !ours {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(question); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if ours && question.Type == dnsmessage.TypeA {
		rr := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.AResource(rr, dnsmessage.AResource{A: addr.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
