package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/netsim"
	"github.com/switchboard/switchboard/webclient"
)

// Deadlines of the browser.
const (
	// browserStart bounds Chromium's start (and the NSS database's making).
	browserStart = 30 * time.Second
	// browserRequest bounds one request to the page driver: a page load
	// waits up to 15 s on its side.
	browserRequest = 20 * time.Second
	// browserStop bounds the driver's exit once its input is closed.
	browserStop = 10 * time.Second
)

// chromium is a headless Chromium that webclient/test/pagedriver.js runs
// in a host of a simulated internet, with the softphone pages the test
// opens. It trusts one test CA and resolves only the names it was given.
type chromium struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr string // its log file

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan driverReply
	readErr error         // why the reader stopped, once done is closed
	done    chan struct{} // closed when the driver's output ended
}

// driverReply is one line of the driver's output.
type driverReply struct {
	ID    *int            `json:"id"`
	Ready bool            `json:"ready"`
	Value json.RawMessage `json:"value"`
	Error *string         `json:"error"`
}

// startChromium starts the page driver in host, trusting the CA of
// caFile and resolving the names of hosts to their addresses. It is
// stopped, and its log printed if the test failed, when t ends.
func startChromium(t *testing.T, host *netsim.Host, caFile string, hosts map[string]string) *chromium {
	t.Helper()
	if !webclient.Built() {
		t.Fatal("the softphone is not built, so the gateway serves its placeholder page: run `make webclient` (make test does) before go test")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: install the Debian package nodejs (and npm); make test runs scripts/deps.sh")
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "webclient"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("webclient's npm packages are not installed (%v): run npm ci in webclient (make test does, with scripts/deps.sh)", err)
	}
	var pairs []string
	for name, addr := range hosts {
		pairs = append(pairs, name+"="+addr)
	}
	sort.Strings(pairs)
	tmp := t.TempDir()
	c := &chromium{t: t, stderr: filepath.Join(tmp, "pagedriver.log"), waiting: map[int]chan driverReply{}, done: make(chan struct{})}
	logFile, err := os.Create(c.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	c.cmd = host.Command(context.Background(), node, filepath.Join("test", "pagedriver.js"),
		"--home", filepath.Join(tmp, "home"), "--ca", caFile, "--hosts", strings.Join(pairs, ","))
	c.cmd.Dir = dir
	c.cmd.Stderr = logFile
	c.cmd.WaitDelay = browserStop
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start the page driver: %v", err)
	}
	ready := make(chan struct{})
	go c.read(stdout, ready)
	t.Cleanup(c.stop)
	select {
	case <-ready:
	case <-c.done:
		t.Fatalf("the page driver ended before Chromium was ready: %v\n%s", c.readErr, tail(readFile(c.stderr), 16<<10))
	case <-time.After(browserStart):
		t.Fatalf("Chromium was not ready within %v\n%s", browserStart, tail(readFile(c.stderr), 16<<10))
	}
	return c
}

// read hands each reply to the request waiting for it.
func (c *chromium) read(stdout io.Reader, ready chan<- struct{}) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var err error
	for sc.Scan() {
		var r driverReply
		if err = json.Unmarshal(sc.Bytes(), &r); err != nil {
			err = fmt.Errorf("the page driver wrote %q: %w", sc.Text(), err)
			break
		}
		if r.Ready {
			close(ready)
			continue
		}
		c.mu.Lock()
		var ch chan driverReply
		if r.ID != nil {
			ch = c.waiting[*r.ID]
			delete(c.waiting, *r.ID)
		}
		c.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	if err == nil {
		err = sc.Err()
	}
	if err == nil {
		err = errors.New("the page driver's output ended")
	}
	c.mu.Lock()
	c.readErr = err
	c.mu.Unlock()
	close(c.done)
}

// do sends one request and decodes its value into out (unless nil).
func (c *chromium) do(req map[string]any, out any) error {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	ch := make(chan driverReply, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	req["id"] = id
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing to the page driver: %w", err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s %v: %s", req["op"], req["page"], *r.Error)
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(r.Value, out)
	case <-c.done:
		return fmt.Errorf("%s %v: %w", req["op"], req["page"], c.readErr)
	case <-time.After(browserRequest):
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
		return fmt.Errorf("%s %v: no answer within %v", req["op"], req["page"], browserRequest)
	}
}

// page is one softphone page of the browser.
type page struct {
	c    *chromium
	name string
}

// open loads url in a new page, which is closed when t ends (its SIP over
// WebSocket and its problems are printed if the test failed).
func (c *chromium) open(t *testing.T, name, url string) *page {
	t.Helper()
	var status int
	if err := c.do(map[string]any{"op": "open", "page": name, "url": url}, &status); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	if status != 200 {
		t.Fatalf("%s: HTTP %d", url, status)
	}
	p := &page{c: c, name: name}
	t.Cleanup(func() {
		if t.Failed() {
			var trace string
			_ = c.do(map[string]any{"op": "trace", "page": name}, &trace)
			t.Logf("--- page %s: problems %v; SIP over WebSocket ---\n%s", name, p.problems(), tail(trace, 64<<10))
		}
		_ = c.do(map[string]any{"op": "close", "page": name}, nil)
	})
	return p
}

// eval evaluates expr in the page and decodes its value into out.
func (p *page) eval(t *testing.T, expr string, out any) {
	t.Helper()
	if err := p.c.do(map[string]any{"op": "eval", "page": p.name, "expr": expr}, out); err != nil {
		t.Fatal(err)
	}
}

// waitFor evaluates expr in the page until its value, decoded into out,
// satisfies ok, or fails t after timeout.
func waitFor[T any](t *testing.T, p *page, what, expr string, timeout time.Duration, ok func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var v T
		p.eval(t, expr, &v)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out after %v waiting for %s; last %+v", p.name, timeout, what, v)
		}
		time.Sleep(100 * time.Millisecond) // polling the page, with a deadline
	}
}

// icePair is one ICE candidate pair as the page's getStats tells it.
type icePair struct {
	State     string
	Nominated bool
	Local     *iceCandidate
	Remote    *iceCandidate
}

type iceCandidate struct {
	Type, Protocol, RelayProtocol, Address string
}

// pageICE is what the page's latest RTCPeerConnection says of ICE.
type pageICE struct {
	ConnectionState string
	Transport       *pageTransport
	Selected        *icePair
	Pairs           []icePair
}

// pageTransport is the page's RTCTransportStats: datagrams received on
// the transport but not as inbound RTP failed to decrypt.
type pageTransport struct {
	DTLSState, SRTPCipher          string
	PacketsReceived, BytesReceived uint64
}

// problems returns the page's uncaught errors, console errors and
// requests to unknown hosts so far.
func (p *page) problems() []string {
	var out []string
	if err := p.c.do(map[string]any{"op": "problems", "page": p.name}, &out); err != nil {
		return []string{err.Error()}
	}
	return out
}

// stop closes the driver's input, which closes the browser, and waits for
// it to exit; it kills it after browserStop.
func (c *chromium) stop() {
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(browserStop):
		c.t.Errorf("the page driver still ran %v after its input closed; killing it", browserStop)
		c.cmd.Process.Kill()
		<-c.done
	}
	if err := c.cmd.Wait(); err != nil {
		c.t.Errorf("the page driver did not exit cleanly: %v", err)
	}
	if c.t.Failed() {
		c.t.Logf("--- page driver and Chromium log ---\n%s", tail(readFile(c.stderr), 64<<20))
	}
}
