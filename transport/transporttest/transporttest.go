// Package transporttest has helpers for testing SIP transports over
// loopback sockets: a Handler that records what it receives and waits for
// it with deadlines, a goroutine-leak check, and in-memory TLS
// certificates.
package transporttest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// Timeout bounds every wait of this package: a test that waits longer has
// failed, not become slow.
const Timeout = 10 * time.Second

// Recorder is a transport.Handler that keeps what it receives, in order,
// for a test to take with Message and FlowClosed.
type Recorder struct {
	// OnMessage, when set, is called with each message before it is
	// recorded (from the caller's goroutine), e.g. to answer it.
	OnMessage func(sip.Message)

	mu      sync.Mutex
	msgs    []sip.Message
	closed  []sip.Addr
	changed chan struct{} // closed and replaced at every event
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{changed: make(chan struct{})} }

// HandleMessage records msg.
func (r *Recorder) HandleMessage(msg sip.Message) {
	if r.OnMessage != nil {
		r.OnMessage(msg)
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, msg)
	r.signal()
	r.mu.Unlock()
}

// HandleFlowClosed records flow.
func (r *Recorder) HandleFlowClosed(flow sip.Addr) {
	r.mu.Lock()
	r.closed = append(r.closed, flow)
	r.signal()
	r.mu.Unlock()
}

func (r *Recorder) signal() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Message takes the oldest recorded message, waiting up to Timeout for
// one; it fails the test when none comes.
func (r *Recorder) Message(t testing.TB) sip.Message {
	t.Helper()
	var m sip.Message
	if !r.wait(func() bool {
		if len(r.msgs) == 0 {
			return false
		}
		m, r.msgs = r.msgs[0], r.msgs[1:]
		return true
	}) {
		t.Fatalf("no message within %v", Timeout)
	}
	return m
}

// FlowClosed takes the oldest flow-closed notification, waiting up to
// Timeout for one; it fails the test when none comes.
func (r *Recorder) FlowClosed(t testing.TB) sip.Addr {
	t.Helper()
	var a sip.Addr
	if !r.wait(func() bool {
		if len(r.closed) == 0 {
			return false
		}
		a, r.closed = r.closed[0], r.closed[1:]
		return true
	}) {
		t.Fatalf("no flow closed within %v", Timeout)
	}
	return a
}

// Counts returns how many messages and flow-closed notifications are
// recorded and not yet taken.
func (r *Recorder) Counts() (messages, closed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs), len(r.closed)
}

// WaitMessages waits up to Timeout until n messages are recorded and not
// taken, and reports whether they are.
func (r *Recorder) WaitMessages(n int) bool {
	return r.wait(func() bool { return len(r.msgs) >= n })
}

// wait runs cond under the lock at every event until it holds or Timeout
// passes.
func (r *Recorder) wait(cond func() bool) bool {
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// CheckGoroutines fails t, at its cleanup, if goroutines started during
// the test are still running: every goroutine of a transport has an owner
// that must have stopped it. Goroutines take a moment to exit after they
// signal that they are done, so the check retries for up to Timeout
// before it reports. Call it first in a test, before the transports are
// made, so that it runs after their cleanups. Do not use it in parallel
// tests.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	before := map[string]bool{}
	for _, g := range goroutines() {
		before[g.id] = true
	}
	t.Cleanup(func() {
		var leaked []goroutine
		for wait := time.Millisecond; ; wait *= 2 {
			leaked = leaked[:0]
			for _, g := range goroutines() {
				if !before[g.id] && !g.ignored() {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if wait > Timeout/2 {
				break
			}
			// Nothing signals a goroutine's last instruction, so this
			// one wait polls; it synchronises nothing of the test.
			time.Sleep(wait)
		}
		var b strings.Builder
		for _, g := range leaked {
			b.WriteString(g.stack)
			b.WriteString("\n\n")
		}
		t.Errorf("%d goroutine(s) leaked:\n%s", len(leaked), b.String())
	})
}

type goroutine struct{ id, stack string }

// ignored reports goroutines that belong to the testing framework or the
// runtime rather than to the code under test.
func (g goroutine) ignored() bool {
	for _, s := range []string{"testing.tRunner", "testing.(*T).Run", "testing.runFuzzing",
		"testing.(*F).Fuzz", "runtime.goexit0", "created by runtime.gc", "os/signal.signal_recv",
		"created by testing.(*T).Parallel"} {
		if strings.Contains(g.stack, s) {
			return true
		}
	}
	return false
}

func goroutines() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []goroutine
	for _, block := range bytes.Split(buf, []byte("\n\n")) {
		s := string(block)
		// "goroutine 12 [running]:"
		f := strings.Fields(s)
		if len(f) < 2 || f[0] != "goroutine" {
			continue
		}
		out = append(out, goroutine{id: f[1], stack: s})
	}
	// The calling goroutine is first; it is the test itself.
	if len(out) > 0 {
		out = slices.Delete(out, 0, 1)
	}
	return out
}

// TLSConfigs returns a server config with a fresh self-signed certificate
// for localhost, 127.0.0.1 and ::1, made in memory, and a client config
// that trusts only that certificate.
func TLSConfigs(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "switchboard test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
	}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client
}
