// Package e2e runs the real switchboard binary against real SIP peers on
// loopback: sipp (Debian package sip-tester) as phones and trunks, and
// hand-written messages over plain sockets for the RFC 4475 checks.
//
// TestMain builds the gateway once (with the race detector when the tests
// run with -race, so that a data race in the gateway fails its exit code).
// Every test starts its own gateway on free loopback ports with a fresh
// data directory, and stops it with SIGTERM, which must end it with exit
// code 0. The gateway's log and every sipp trace of a test are printed when
// the test fails.
//
// Settings, for running by hand:
//
//	SWITCHBOARD_E2E_BINARY=path   use this gateway binary instead of building one
//	                              (for every test, the flood test included)
//
// Tests that need sipp fail with a message when it is not installed
// (`make test` installs it, with scripts/deps.sh).
package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/netns"
	"github.com/switchboard/switchboard/internal/netsim"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// Users of every gateway the tests start, as SWITCHBOARD_USERS spells them.
var users = map[string]string{
	"alice": "alice-secret",
	"bob":   "bob-secret",
	"1000":  "pass1000",
	"1001":  "pass1001",
	"carol": "carol-secret",
}

// domain is the SIP domain and digest realm of the gateways.
const domain = "localhost"

// Deadlines. Every wait in this package is bounded by one of them.
const (
	buildTimeout = 3 * time.Minute
	readyTimeout = 15 * time.Second
	// stopTimeout is above the gateway's own 10 s shutdown bound.
	stopTimeout = 20 * time.Second
	// sippTimeout is sipp's own -timeout; the process is killed
	// sippGrace later if it has not ended by then.
	sippTimeout = 20 * time.Second
	sippGrace   = 10 * time.Second
	// bindTimeout bounds the wait for a sipp UAS to open its socket.
	bindTimeout = 10 * time.Second
)

var (
	// gatewayBin is the switchboard binary under test.
	gatewayBin string
	// plainBin is the same binary built without the race detector, for
	// the tests that measure memory or rates: -race multiplies both by 5
	// to 10. It is gatewayBin when the tests run without -race.
	plainBin string
	// sippBin is sipp's path, or "" when it is not installed.
	sippBin string
	// scenarioDir holds the sipp scenarios (test/sipp).
	scenarioDir string
)

func TestMain(m *testing.M) {
	os.Exit(mainWithCleanup(m))
}

func mainWithCleanup(m *testing.M) int {
	dir, err := filepath.Abs(filepath.Join("..", "sipp"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	scenarioDir = dir
	if p, err := exec.LookPath("sipp"); err == nil {
		sippBin = p
	}

	if p := os.Getenv("SWITCHBOARD_E2E_BINARY"); p != "" {
		gatewayBin, plainBin = p, p
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "switchboard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	gatewayBin = filepath.Join(tmp, "switchboard")
	if err := buildGateway(gatewayBin, raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the gateway:", err)
		return 1
	}
	plainBin = gatewayBin
	if raceEnabled {
		plainBin = filepath.Join(tmp, "switchboard-plain")
		if err := buildGateway(plainBin, false); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: building the gateway without -race:", err)
			return 1
		}
	}
	return m.Run()
}

// buildGateway builds ./cmd/switchboard into out, with the race detector
// when race is set.
func buildGateway(out string, race bool) error {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("repository root not found at %s: %w", root, err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	args := []string{"build"}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "-o", out, "./cmd/switchboard")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, b)
	}
	return nil
}

// requireSipp fails a test that needs sipp when it is not installed.
func requireSipp(t *testing.T) {
	t.Helper()
	if sippBin == "" {
		t.Fatal("sipp is not installed: install the Debian package sip-tester (make test does, with scripts/deps.sh)")
	}
}

// gateway is a running switchboard process.
type gateway struct {
	t *testing.T
	// stopped is set once stop has run.
	stopped bool
	// terminated is set when the test sent SIGTERM itself: stop then
	// waits for the exit instead of asking for it.
	terminated bool
	// host is the loopback address every listener is on.
	host string
	// reach is the address at which the test reaches the HTTP listener
	// (host when empty): a gateway behind NAT listens on another.
	reach string
	// sipPort is the port of both the UDP and the TCP listener.
	sipPort  int
	httpPort int
	icePort  int // SWITCHBOARD_ICE_PORT, UDP and TCP
	// httpsPort is the HTTPS (WSS) port when gatewayOptions.https was set;
	// ca issued its certificate, for localhost and host.
	httpsPort int
	ca        *transporttest.CA
	logPath   string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait returned
	err    error         // of cmd.Wait, once exited is closed
}

// sipAddr is the gateway's SIP address, host:port.
func (g *gateway) sipAddr() string { return net.JoinHostPort(g.host, strconv.Itoa(g.sipPort)) }

// gatewayOptions change what startGateway starts.
type gatewayOptions struct {
	// config, when not empty, is written to a file that SWITCHBOARD_CONFIG
	// names.
	config string
	// env are more settings, SWITCHBOARD_* name to value.
	env map[string]string
	// bin is the binary to run; empty: gatewayBin.
	bin string
	// https turns on SWITCHBOARD_HTTPS, with a certificate of a test CA.
	https bool
	// host is the address every listener is on (default 127.0.0.1);
	// httpPort the HTTP listener's port (0: a free one).
	host     string
	httpPort int
	// dataDir is the data directory (default: a fresh one per start), for
	// a test that restarts a gateway on its state.
	dataDir string
	// in runs the gateway in a host of a simulated internet (netsim), on
	// the standard ports, which nothing else takes there: SIP 5060, HTTP
	// 80, ICE 10000. reach is then the address at which the test reaches
	// it (default host), for a gateway behind NAT.
	in    *netsim.Host
	reach string
	// cgroup, when set, is the directory of a cgroup (cpuQuota) that the
	// gateway's process joins before the gateway starts: the runtime and
	// the gateway read their CPU quota at start. Not with in.
	cgroup string
}

// startGateway starts a gateway on free loopback ports, waits until
// /readyz answers 200, and registers its stop (SIGTERM, exit code 0) as a
// cleanup of t. Its log is printed if t fails.
func startGateway(t *testing.T, opts gatewayOptions) *gateway {
	t.Helper()
	dir := t.TempDir()
	// A port found free may be taken before the gateway binds it: try
	// again with new ports when the gateway cannot listen.
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		g, err := tryStartGateway(t, dir, attempt, opts)
		if err == nil {
			return g
		}
		lastErr = err
		if !errors.Is(err, errListen) {
			break
		}
	}
	t.Fatalf("gateway did not start: %v", lastErr)
	return nil
}

var errListen = errors.New("gateway could not listen")

func tryStartGateway(t *testing.T, dir string, attempt int, opts gatewayOptions) (*gateway, error) {
	t.Helper()
	g := &gateway{t: t, host: "127.0.0.1", reach: opts.reach, httpPort: opts.httpPort, exited: make(chan struct{})}
	if opts.host != "" {
		g.host = opts.host
	}
	if opts.in != nil {
		g.sipPort, g.httpPort, g.icePort = 5060, 80, 10000
	} else {
		// Each port was free a moment ago and is closed again, so the
		// kernel may hand the same one out twice: the gateway then
		// refuses its configuration (HTTP on the SIP TCP port).
		for g.sipPort = freeSIPPort(t, g.host); g.sipPort == g.httpPort; {
			g.sipPort = freeSIPPort(t, g.host)
		}
		for g.httpPort == 0 || g.httpPort == g.sipPort {
			g.httpPort = freePort(t, "tcp", g.host)
		}
		for g.icePort = freeSIPPort(t, g.host); g.icePort == g.sipPort || g.icePort == g.httpPort; {
			g.icePort = freeSIPPort(t, g.host)
		}
	}
	g.logPath = filepath.Join(dir, fmt.Sprintf("gateway-%d.log", attempt))
	logFile, err := os.Create(g.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	var ul []string
	for u, p := range users {
		ul = append(ul, u+":"+p)
	}
	env := map[string]string{
		"SWITCHBOARD_DOMAIN":    domain,
		"SWITCHBOARD_SIP_UDP":   g.sipAddr(),
		"SWITCHBOARD_SIP_TCP":   g.sipAddr(),
		"SWITCHBOARD_HTTP":      net.JoinHostPort(g.host, strconv.Itoa(g.httpPort)),
		"SWITCHBOARD_DATA_DIR":  cmp.Or(opts.dataDir, filepath.Join(dir, fmt.Sprintf("data-%d", attempt))),
		"SWITCHBOARD_USERS":     strings.Join(ul, ","),
		"SWITCHBOARD_RTP_PORTS": rtpRange(g.sipPort, g.icePort),
		"SWITCHBOARD_ICE_PORT":  strconv.Itoa(g.icePort),
		"SWITCHBOARD_LOG_LEVEL": "debug",
		// A call still up when a test stops its gateway must not hold the
		// stop for the default 20 s drain.
		"SWITCHBOARD_DRAIN_TIMEOUT": "2s",
	}
	if opts.config != "" {
		path := filepath.Join(dir, "switchboard.toml")
		if err := os.WriteFile(path, []byte(opts.config), 0o600); err != nil {
			t.Fatal(err)
		}
		env["SWITCHBOARD_CONFIG"] = path
	}
	if opts.https {
		g.ca = transporttest.NewCA(t)
		// Not a port the other listeners will take: they are not bound yet.
		for g.httpsPort = freePort(t, "tcp", g.host); g.httpsPort == g.sipPort || g.httpsPort == g.httpPort || g.httpsPort == g.icePort; {
			g.httpsPort = freePort(t, "tcp", g.host)
		}
		cert, key := g.ca.IssueFiles(t, dir, "localhost", g.host)
		env["SWITCHBOARD_HTTPS"] = net.JoinHostPort(g.host, strconv.Itoa(g.httpsPort))
		env["SWITCHBOARD_TLS_CERT"], env["SWITCHBOARD_TLS_KEY"] = cert, key
	}
	for k, v := range opts.env {
		env[k] = v
	}

	bin := opts.bin
	if bin == "" {
		bin = gatewayBin
	}
	g.cmd = exec.Command(bin)
	if opts.in != nil {
		g.cmd = opts.in.Command(context.Background(), bin)
	}
	if opts.cgroup != "" {
		// The shell moves itself into the cgroup and becomes the
		// gateway, with its pid: what stop signals.
		g.cmd = exec.Command("/bin/sh", "-c", `echo $$ >"$0/cgroup.procs" && exec "$1"`, opts.cgroup, bin)
	}
	// Only what the gateway needs from our environment: no stray
	// SWITCHBOARD_* setting of the developer's shell leaks in.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWITCHBOARD_") && !strings.HasPrefix(kv, "GORACE=") {
			g.cmd.Env = append(g.cmd.Env, kv)
		}
	}
	for k, v := range env {
		g.cmd.Env = append(g.cmd.Env, k+"="+v)
	}
	// halt_on_error is not set: a race report is printed to the log and
	// the process exits 66 at the end, which the stop check reports. The
	// default second of sleep at exit is shortened.
	g.cmd.Env = append(g.cmd.Env, "GORACE=exitcode=66 atexit_sleep_ms=100")
	g.cmd.Stdout = logFile
	g.cmd.Stderr = logFile
	g.cmd.Dir = dir
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		g.err = g.cmd.Wait()
		close(g.exited)
	}()

	if err := g.waitReady(); err != nil {
		g.kill()
		log := readFile(g.logPath)
		if strings.Contains(log, "address already in use") {
			t.Logf("gateway attempt %d: a port was taken, trying others", attempt)
			return nil, fmt.Errorf("%w: %v", errListen, err)
		}
		return nil, fmt.Errorf("%v\n--- gateway log ---\n%s", err, log)
	}
	t.Cleanup(g.stop)
	return g, nil
}

// rtpRange is an RTP port range that does not hold sipPort or icePort
// (the gateway refuses one that does).
func rtpRange(sipPort, icePort int) string {
	start := 20000
	for _, p := range []int{sipPort, icePort, sipPort, icePort} {
		if p >= start && p <= start+999 {
			start += 1000
		}
	}
	return fmt.Sprintf("%d-%d", start, start+999)
}

// waitReady polls GET /readyz until it answers 200, the process exits or
// readyTimeout passes.
func (g *gateway) waitReady() error {
	url := fmt.Sprintf("http://%s/readyz", net.JoinHostPort(cmp.Or(g.reach, g.host), strconv.Itoa(g.httpPort)))
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for time.Now().Before(deadline) {
		res, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			// Another process may have taken the port after we found it
			// free: the answer counts only once our gateway says it
			// listens.
			if res.StatusCode == http.StatusOK && strings.Contains(readFile(g.logPath), "msg=listening") {
				return nil
			}
			err = fmt.Errorf("GET /readyz: %s", res.Status)
		}
		last = err
		select {
		case <-g.exited:
			return fmt.Errorf("gateway exited before it was ready: %v", g.err)
		case <-tick.C:
		}
	}
	return fmt.Errorf("gateway not ready after %v: %v", readyTimeout, last)
}

// stop sends SIGTERM and checks that the gateway exits 0 in time; it
// prints the gateway's log if the test failed. It is a cleanup of the
// test that started the gateway, so that it runs after the cleanups of
// the sipp processes the test started later.
func (g *gateway) stop() {
	if g.stopped {
		return // a test stopped it already
	}
	g.stopped = true
	t := g.t
	select {
	case <-g.exited:
		switch {
		case !g.terminated:
			t.Errorf("gateway exited on its own during the test: %v", g.err)
		case g.err != nil:
			t.Errorf("gateway did not exit cleanly after SIGTERM: %v", g.err)
		}
	default:
		if !g.terminated {
			if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Errorf("SIGTERM to the gateway: %v", err)
			}
		}
		select {
		case <-g.exited:
			if g.err != nil {
				t.Errorf("gateway did not exit cleanly after SIGTERM: %v", g.err)
			}
		case <-time.After(stopTimeout):
			t.Errorf("gateway still running %v after SIGTERM; killing it", stopTimeout)
			g.kill()
		}
	}
	log := readFile(g.logPath)
	if strings.Contains(log, "WARNING: DATA RACE") {
		t.Errorf("the race detector reported a data race in the gateway")
	}
	if strings.Contains(log, "panic:") {
		t.Errorf("the gateway panicked")
	}
	if t.Failed() {
		t.Logf("--- gateway log (%s) ---\n%s", g.logPath, tail(log, 256<<10))
	}
}

// kill ends the process at once and waits for it.
func (g *gateway) kill() {
	g.cmd.Process.Kill()
	select {
	case <-g.exited:
	case <-time.After(stopTimeout):
	}
}

// freePort returns a port that was free on host for network ("tcp" or
// "udp") a moment ago.
func freePort(t *testing.T, network, host string) int {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

// freeSIPPort returns a port that was free on host for both UDP and TCP a
// moment ago, as SIP listens on the same port for both.
func freeSIPPort(t *testing.T, host string) int {
	t.Helper()
	for range 50 {
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		u.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP on " + host)
	return 0
}

// sipp is one sipp process.
type sipp struct {
	t        *testing.T
	name     string
	dir      string // where its traces are
	messages string // -message_file
	errors   string // -error_file
	stdout   string // its screen output
	cmd      *exec.Cmd
	ctx      context.Context // bounds the process
	cancel   context.CancelFunc
	done     chan struct{} // closed when cmd.Wait returned
	code     int           // exit code once done; -1 when killed
	waitErr  error
}

// sippOptions are what a sipp run needs beyond the scenario.
type sippOptions struct {
	// ip and port are sipp's local address (-i, -p); port 0 picks a free
	// one.
	ip   string
	port int
	// tcp runs over TCP (-t t1) rather than UDP.
	tcp bool
	// inf is the injection file's one line of fields, ';'-separated
	// (SEQUENTIAL), or "" for none.
	inf string
	// service is -s, the user part the scenario calls [service].
	service string
	// user and password answer digest challenges (-au, -ap); authURI is
	// -auth_uri, the digest uri without "sip:".
	user, password, authURI string
	// remote is the gateway's address; default the gateway of the test.
	remote string
	// args are more arguments (media: -mi, -mp, -rtp_echo); files are
	// written into sipp's working directory first (a pcap to play).
	args  []string
	files map[string][]byte
	// in runs sipp in a host of a simulated internet (netsim); port must
	// be given, and the control socket takes sipp's default port.
	in *netsim.Host
}

// startSipp starts sipp with scenario (a file of test/sipp) for one call
// (-m 1), bounded by -timeout with -timeout_error and killed sippGrace
// later if it is still running. Its traces are printed if the test fails.
func startSipp(t *testing.T, g *gateway, name, scenario string, o sippOptions) *sipp {
	t.Helper()
	requireSipp(t)
	if o.ip == "" {
		o.ip = "127.0.0.1"
	}
	if o.port == 0 {
		if o.in != nil {
			t.Fatal("startSipp: a sipp in a simulated internet needs a port")
		}
		o.port = freePort(t, map[bool]string{false: "udp", true: "tcp"}[o.tcp], o.ip)
	}
	if o.remote == "" {
		o.remote = g.sipAddr()
	}
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range o.files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &sipp{
		t:        t,
		name:     name,
		dir:      dir,
		messages: filepath.Join(dir, "messages.log"),
		errors:   filepath.Join(dir, "errors.log"),
		stdout:   filepath.Join(dir, "screen.log"),
		done:     make(chan struct{}),
	}
	args := []string{
		"-sf", filepath.Join(scenarioDir, scenario),
		"-i", o.ip, "-p", strconv.Itoa(o.port),
		"-m", "1",
		"-timeout", fmt.Sprintf("%ds", int(sippTimeout.Seconds())), "-timeout_error",
		"-nostdin",
		"-trace_msg", "-message_file", s.messages,
		"-trace_err", "-error_file", s.errors,
	}
	if o.in == nil {
		// The control socket binds every interface on 8888 and up unless
		// told: keep it on loopback, on a port of its own.
		args = append(args, "-ci", o.ip, "-cp", strconv.Itoa(freePort(t, "udp", o.ip)))
	}
	if o.tcp {
		args = append(args, "-t", "t1")
	}
	if o.inf != "" {
		inf := filepath.Join(dir, "fields.csv")
		if err := os.WriteFile(inf, []byte("SEQUENTIAL\n"+o.inf+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-inf", inf)
	}
	if o.service != "" {
		args = append(args, "-s", o.service)
	}
	if o.user != "" {
		args = append(args, "-au", o.user, "-ap", o.password)
	}
	if o.authURI != "" {
		args = append(args, "-auth_uri", o.authURI)
	}
	args = append(args, o.args...)
	args = append(args, o.remote)

	out, err := os.Create(s.stdout)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sippTimeout+sippGrace)
	s.ctx, s.cancel = ctx, cancel
	s.cmd = exec.CommandContext(ctx, sippBin, args...)
	if o.in != nil {
		s.cmd = o.in.Command(ctx, sippBin, args...)
	}
	s.cmd.Dir = dir
	s.cmd.Stdout = out
	s.cmd.Stderr = out
	s.cmd.WaitDelay = 5 * time.Second
	if err := s.cmd.Start(); err != nil {
		out.Close()
		cancel()
		t.Fatalf("start sipp: %v", err)
	}
	t.Logf("sipp %s: %s", name, strings.Join(s.cmd.Args, " "))
	go func() {
		defer out.Close()
		s.waitErr = s.cmd.Wait()
		s.code = s.cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel() // kills it if it is still running
		<-s.done
		if t.Failed() {
			s.dump()
		}
	})
	return s
}

// wait waits for sipp to end and returns its exit code: 0 when every call
// succeeded, 1 when one failed, -1 when it was killed at the deadline.
func (s *sipp) wait() int {
	<-s.done
	if errors.Is(s.ctx.Err(), context.DeadlineExceeded) {
		s.t.Errorf("sipp %s killed after %v: %v", s.name, sippTimeout+sippGrace, s.waitErr)
	}
	return s.code
}

// expectSuccess waits for sipp and fails the test unless it exited 0.
func (s *sipp) expectSuccess() {
	s.t.Helper()
	if code := s.wait(); code != 0 {
		s.t.Errorf("sipp %s exited %d, want 0 (every call successful)", s.name, code)
	}
}

// kill ends sipp at once, if it is still running, and waits for it.
func (s *sipp) kill() {
	s.cancel()
	<-s.done
}

// expectCall waits for the caller's sipp and then for the callees': each
// must exit 0. When the caller fails, the callees are killed rather than
// left to wait for their timeout.
func expectCall(t *testing.T, caller *sipp, callees ...*sipp) {
	t.Helper()
	if code := caller.wait(); code != 0 {
		t.Errorf("sipp %s exited %d, want 0 (every call successful)", caller.name, code)
		for _, c := range callees {
			c.kill()
		}
		return
	}
	for _, c := range callees {
		c.expectSuccess()
	}
}

// runSipp runs sipp to its end and returns its exit code.
func runSipp(t *testing.T, g *gateway, name, scenario string, o sippOptions) int {
	t.Helper()
	return startSipp(t, g, name, scenario, o).wait()
}

// dump prints the traces of a sipp run.
func (s *sipp) dump() {
	s.t.Logf("--- sipp %s (exit %d): %s ---", s.name, s.code, strings.Join(s.cmd.Args, " "))
	s.t.Logf("--- sipp %s screen (tail) ---\n%s", s.name, tail(readFile(s.stdout), 4<<10))
	s.t.Logf("--- sipp %s errors ---\n%s", s.name, tail(readFile(s.errors), 32<<10))
	s.t.Logf("--- sipp %s messages ---\n%s", s.name, tail(readFile(s.messages), 64<<10))
}

// messageLog returns what sipp traced so far.
func (s *sipp) messageLog() string { return readFile(s.messages) }

// received returns the responses sipp traced as received, in order.
func (s *sipp) received() []*response {
	var out []*response
	parts := strings.Split(s.messageLog(), "message received [")
	for _, part := range parts[1:] {
		// "N] bytes :\n\n<message>\n\n-----...": the message starts
		// after the first blank line.
		_, msg, ok := strings.Cut(part, "\n\n")
		if !ok {
			continue
		}
		msg, _, _ = strings.Cut(msg, "\n-----------------------------------------------")
		if r, err := parseResponse([]byte(msg)); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// waitBound waits until something listens on ip:port for sipp's
// transport (a UAS that has opened its socket), so that the requests sent
// to it are not lost before it runs. It reads sipp's /proc/PID/net, of
// sipp's network namespace, and does not touch the socket; elsewhere it
// returns at once and relies on UDP retransmissions.
func (s *sipp) waitBound(tcp bool, ip string, port int) {
	s.t.Helper()
	table := fmt.Sprintf("/proc/%d/net/udp", s.cmd.Process.Pid)
	if tcp {
		table = fmt.Sprintf("/proc/%d/net/tcp", s.cmd.Process.Pid)
	}
	if _, err := os.Stat(table); err != nil {
		return
	}
	deadline := time.Now().Add(bindTimeout)
	for time.Now().Before(deadline) {
		if listening(table, ip, port, tcp) {
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("sipp %s exited (%d) before it opened %s:%d", s.name, s.code, ip, port)
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.t.Fatalf("sipp %s did not open %s:%d within %v", s.name, ip, port, bindTimeout)
}

// listening reports whether table (/proc/net/udp or /proc/net/tcp) has a
// socket bound to ip:port, in the LISTEN state for TCP.
func listening(table, ip string, port int, tcp bool) bool {
	b, err := os.ReadFile(table)
	if err != nil {
		return false
	}
	addr := net.ParseIP(ip).To4()
	if addr == nil {
		return false
	}
	// IPv4 addresses are printed as the 32-bit word in host order,
	// little-endian on the machines we run on; the port in big-endian.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", addr[3], addr[2], addr[1], addr[0], port)
	wildcard := fmt.Sprintf("00000000:%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || (f[1] != want && f[1] != wildcard) {
			continue
		}
		if !tcp || f[3] == "0A" {
			return true
		}
	}
	return false
}

// registerUser registers user (with its password) from ip:port with
// register-only.xml, so that a UAS started on that port afterwards is
// reached by calls to user.
func registerUser(t *testing.T, g *gateway, name, user, ip string, port int, tcp bool) {
	t.Helper()
	code := runSipp(t, g, name, "register-only.xml", sippOptions{
		ip: ip, port: port, tcp: tcp,
		inf:     domain,
		service: user, user: user, password: users[user],
	})
	if code != 0 {
		t.Fatalf("registering %s from %s:%d: sipp exited %d", user, ip, port, code)
	}
}

// readFile returns the content of path, or a note saying why not.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "(none)"
		}
		return "(" + err.Error() + ")"
	}
	return string(b)
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// isolated runs body as t inside a network namespace of its own that has
// only loopback (internal/netns), for tests that name foreign hosts in
// their messages or need more source addresses than 127.0.0.0/8 offers.
// The child reuses the gateway binary this process built.
func isolated(t *testing.T, opts netns.Options, body func(t *testing.T)) {
	t.Helper()
	opts.Env = append(opts.Env, "SWITCHBOARD_E2E_BINARY="+gatewayBin)
	netns.Run(t, opts, body)
}
