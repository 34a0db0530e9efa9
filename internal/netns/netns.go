// Package netns runs a test inside a network namespace of its own, which
// has only a loopback interface: nothing the code under test sends can
// leave the machine, whatever host a message names. A SIP server answers
// to Via hosts and forwards to Request-URI hosts on its own, and attack
// tests name foreign hosts on purpose; in such a namespace those hosts are
// either unreachable or addresses the test itself put on loopback to
// watch what arrives there.
//
// Run re-executes the test binary under `unshare --net` for that one test,
// brings loopback up, adds the addresses and local routes the test asks
// for, checks that no interface but loopback exists and that no default
// route does, and then runs the test's body there. The namespace ends with
// the child process, which a deadline ends too.
//
// A test that builds a network of namespaces (internal/netsim) asks for a
// contained sandbox (Options.Contained): the child gets a mount namespace
// and a PID namespace too, so that the named network namespaces it adds
// and every process it starts end with it, however it ends.
//
// It needs root, or unprivileged user namespaces (then it maps the user to
// root in a user namespace of its own; a contained sandbox needs root), and
// unshare (util-linux) and ip (iproute2); scripts/deps.sh installs them.
// Without them the test fails with a message rather than skipping.
package netns

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envInside names the test that this process runs inside its namespace.
const envInside = "SWITCHBOARD_NETNS_TEST"

// DefaultTimeout bounds a namespaced test when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Minute

// Options shape the namespace of a test.
type Options struct {
	// Addrs are more addresses for the loopback interface, in ip's
	// prefix notation: "192.0.2.10/32", "2001:db8::1/64". Tests use them
	// as hosts that seem foreign (RFC 5737 and RFC 3849 ranges).
	Addrs []string
	// LocalRoutes are prefixes made local on loopback ("ip route add local
	// PREFIX dev lo"): a test may bind any address in them, as 127.0.0.0/8
	// allows by itself, to send from many sources.
	LocalRoutes []string
	// Env are more environment variables for the child, "NAME=value": the
	// path of a binary the parent built, say, so that the child need not
	// build it again.
	Env []string
	// Timeout bounds the child process; DefaultTimeout when zero.
	Timeout time.Duration
	// Contained gives the test a mount and a PID namespace of its own
	// besides the network namespace. Named network namespaces (ip netns
	// add) then live on a tmpfs at /run/netns that only the test sees,
	// and the test is the first process of its PID namespace: when it
	// ends, passes, fails, times out or loses its parent, the kernel
	// kills every process it started, and its namespaces go with them.
	// It needs root.
	Contained bool
}

// NetnsDir is where ip keeps named network namespaces; in a contained
// sandbox a tmpfs of its own is mounted there.
const NetnsDir = "/run/netns"

// contained is set in the child of a contained test, before its body runs.
var contained bool

// Inside reports whether this process is the child that runs a test in
// its namespace. A TestMain uses it to skip work the parent already did.
func Inside() bool { return os.Getenv(envInside) != "" }

// Contained reports whether this process runs a test in a contained
// sandbox (Options.Contained).
func Contained() bool { return contained }

// Run runs body as the test t inside a network namespace that has only
// loopback, set up as opts says. In the parent process it re-executes the
// test binary for t alone and reports the child's outcome as t's: the
// child's output is logged, and t fails when the child fails. Run must be
// called from the top of the test function, before anything else; t must
// not be parallel with tests that change the process's namespaces.
func Run(t *testing.T, opts Options, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(envInside) == t.Name() {
		if err := setUp(opts); err != nil {
			t.Fatalf("netns: setting up the namespace: %v", err)
		}
		if err := checkSealed(); err != nil {
			t.Fatalf("netns: the namespace is not sealed: %v", err)
		}
		if opts.Contained {
			if err := contain(); err != nil {
				t.Fatalf("netns: containing the test: %v", err)
			}
		}
		body(t)
		return
	}
	runChild(t, opts)
}

// runChild runs the test binary for t alone under unshare.
func runChild(t *testing.T, opts Options) {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("netns: unshare not found (Debian package util-linux; make test installs it): %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("netns: ip not found (Debian package iproute2; make test installs it): %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("netns: finding the test binary: %v", err)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()

	args := []string{"--net"}
	switch {
	case opts.Contained && os.Geteuid() != 0:
		t.Fatalf("netns: %s builds a network of namespaces and needs root (CI runs the tests as root); run it as root, e.g. sudo -E go test -run '%s' ./...", t.Name(), runPattern(t.Name()))
	case opts.Contained:
		// --fork: the test becomes PID 1 of the new PID namespace, whose
		// end kills every process in it; --kill-child: unshare's own end
		// (the deadline below) ends the test.
		args = append(args, "--mount", "--pid", "--fork", "--kill-child", "--mount-proc")
	case os.Geteuid() != 0:
		args = append(args, "--user", "--map-root-user")
	}
	args = append(args, "--", self, "-test.run", runPattern(t.Name()), "-test.count=1", "-test.v")
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout", time.Until(d).Round(time.Second).String())
	}
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Env = append(append(os.Environ(), envInside+"="+t.Name()), opts.Env...)
	cmd.WaitDelay = 5 * time.Second
	// If this process dies without killing the child (go test's own
	// timeout, a signal), the child dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	logOutput(t, out.Bytes())
	if err != nil || ctx.Err() != nil {
		// A failing child's output ends with the dumps of its cleanups
		// (gateway, coturn, page logs), and CI keeps only the tail of a
		// run: the failures themselves are repeated last.
		t.Logf("netns: where the test failed in its namespace:\n%s", failures(out.Bytes()))
	}
	switch {
	case ctx.Err() != nil:
		t.Fatalf("netns: the test did not end within %v in its namespace", timeout)
	case err != nil:
		t.Fatalf("netns: the test failed in its namespace: %v", err)
	case !bytes.Contains(out.Bytes(), []byte("--- PASS: "+t.Name())):
		// A pattern that matched nothing runs no test and passes.
		t.Fatalf("netns: the test did not run in its namespace (pattern %s)", runPattern(t.Name()))
	}
}

// runPattern is the -test.run pattern of exactly the test or subtest name.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// logOutput logs the child's output line by line, without the test
// runner's own lines.
func logOutput(t *testing.T, out []byte) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "PASS" || line == "FAIL" || strings.HasPrefix(line, "=== RUN") || strings.HasPrefix(line, "ok ") {
			continue
		}
		t.Log("ns| " + line)
	}
}

// failures picks from a child's verbose output what says where it
// failed: the first line of each log call (file:line: message, which an
// error's message is too, cut at maxDigestLine bytes) and the --- FAIL
// lines, at most maxDigestLines of them, the last ones kept.
func failures(out []byte) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if !strings.HasPrefix(trimmed, "--- FAIL") && !logCall.MatchString(line) {
			continue
		}
		if len(line) > maxDigestLine {
			line = line[:maxDigestLine] + " …"
		}
		lines = append(lines, line)
	}
	if len(lines) > maxDigestLines {
		lines = append([]string{"…"}, lines[len(lines)-maxDigestLines:]...)
	}
	return strings.Join(lines, "\n")
}

const (
	maxDigestLines = 40
	maxDigestLine  = 1500
)

// logCall matches the first line of a t.Log or t.Error call in verbose
// output: indentation, a Go file, a line number.
var logCall = regexp.MustCompile(`^\s+[\w.-]+\.go:\d+: `)

// setUp brings loopback up and adds the addresses and routes of opts.
func setUp(opts Options) error {
	cmds := [][]string{{"link", "set", "lo", "up"}}
	for _, a := range opts.Addrs {
		c := []string{"addr", "add", a, "dev", "lo"}
		if strings.Contains(a, ":") {
			c = []string{"-6", "addr", "add", a, "dev", "lo", "nodad"}
		}
		cmds = append(cmds, c)
	}
	for _, r := range opts.LocalRoutes {
		c := []string{"route", "add", "local", r, "dev", "lo"}
		if strings.Contains(r, ":") {
			c = append([]string{"-6"}, c...)
		}
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(c, " "), err, bytes.TrimSpace(out))
		}
	}
	for _, r := range opts.LocalRoutes {
		if strings.Contains(r, ":") {
			// IPv6 binds only assigned addresses, local route or not,
			// unless the namespace allows others.
			return os.WriteFile("/proc/sys/net/ipv6/ip_nonlocal_bind", []byte("1\n"), 0o644)
		}
	}
	return nil
}

// contain finishes a contained sandbox: mounts made here stay here, and
// named network namespaces live on a tmpfs of the sandbox.
func contain() error {
	if os.Getpid() != 1 {
		return fmt.Errorf("the test is process %d, not the first process of a PID namespace", os.Getpid())
	}
	if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private: %w", err)
	}
	// The directory itself may be created on the host's /run, as any ip
	// netns add does; nothing is put in it there.
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("netns", NetnsDir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("mounting a tmpfs on %s: %w", NetnsDir, err)
	}
	contained = true
	return nil
}

// checkSealed verifies that the namespace has no way out: loopback is its
// only interface, and it has no default route.
func checkSealed() error {
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return fmt.Errorf("interface %s is not loopback", i.Name)
		}
	}
	for _, c := range [][]string{{"-4", "route", "show", "default"}, {"-6", "route", "show", "default"}} {
		out, err := exec.Command("ip", c...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(c, " "), err, bytes.TrimSpace(out))
		}
		if len(bytes.TrimSpace(out)) > 0 {
			return fmt.Errorf("a default route exists: %s", bytes.TrimSpace(out))
		}
	}
	return nil
}
