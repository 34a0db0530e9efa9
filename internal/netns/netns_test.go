package netns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunSealsTheNamespace(t *testing.T) {
	Run(t, Options{
		Addrs:       []string{"192.0.2.10/32", "2001:db8:1::1/128"},
		LocalRoutes: []string{"198.51.100.0/24", "2001:db8:2::/64"},
		Timeout:     time.Minute,
	}, func(t *testing.T) {
		if !Inside() {
			t.Fatal("Inside reports false in the namespace")
		}
		// No route out: a global address cannot be reached.
		if c, err := net.Dial("udp4", "203.0.113.1:9"); err == nil {
			c.Close()
			t.Fatal("dialed 203.0.113.1 from a namespace that should have no route out")
		}
		// The added address is on loopback: a datagram sent to it arrives.
		roundTrip(t, netip.MustParseAddrPort("192.0.2.10:0"), netip.MustParseAddrPort("127.0.0.1:0"))
		roundTrip(t, netip.MustParseAddrPort("[2001:db8:1::1]:0"), netip.MustParseAddrPort("[::1]:0"))
		// Any address of a local route can be a source.
		roundTrip(t, netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("198.51.100.77:0"))
		roundTrip(t, netip.MustParseAddrPort("[::1]:0"), netip.MustParseAddrPort("[2001:db8:2::42]:0"))
	})
}

// roundTrip sends a datagram from an address to another and waits for it.
func roundTrip(t *testing.T, to, from netip.AddrPort) {
	t.Helper()
	if to.Addr().Is6() != from.Addr().Is6() {
		t.Fatalf("mixed families %v and %v", to, from)
	}
	rx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatalf("listen on %v: %v", to, err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(from))
	if err != nil {
		t.Fatalf("bind %v: %v", from, err)
	}
	defer tx.Close()
	if _, err := tx.WriteTo([]byte("ping"), rx.LocalAddr()); err != nil {
		t.Fatalf("send to %v: %v", rx.LocalAddr(), err)
	}
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, src, err := rx.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read on %v: %q, %v", rx.LocalAddr(), buf[:n], err)
	}
	if src.Addr() != netip.MustParseAddrPort(tx.LocalAddr().String()).Addr() {
		t.Fatalf("datagram from %v, sent from %v", src, tx.LocalAddr())
	}
}

func TestRunPattern(t *testing.T) {
	for name, want := range map[string]string{
		"TestA":          "^TestA$",
		"TestA/sub_case": "^TestA$/^sub_case$",
		"TestA/x.y(1)":   `^TestA$/^x\.y\(1\)$`,
	} {
		if got := runPattern(name); got != want {
			t.Errorf("runPattern(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestRunContained: a contained test is the first process of its own PID
// namespace, its named network namespaces are its own, and a process it
// leaves running dies with it. The leftover holds a lock on a file that
// the parent takes once the child has ended: it can only if the holder is
// gone.
func TestRunContained(t *testing.T) {
	lock := filepath.Join(os.TempDir(), "netns-contained-"+strconv.Itoa(os.Getpid())+".lock")
	Run(t, Options{Contained: true, Timeout: time.Minute, Env: []string{"NETNS_TEST_LOCK=" + lock}}, func(t *testing.T) {
		if !Contained() || os.Getpid() != 1 {
			t.Fatalf("Contained() = %v, pid %d: want a contained test as process 1", Contained(), os.Getpid())
		}
		if out, err := exec.Command("ip", "netns", "add", "netns-contained-test").CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		if out, _ := exec.Command("ip", "netns", "list").CombinedOutput(); !strings.Contains(string(out), "netns-contained-test") {
			t.Fatalf("ip netns list: %s", out)
		}
		f, err := os.OpenFile(os.Getenv("NETNS_TEST_LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		// The leftover shares the locked file; nothing stops it.
		sleep := exec.Command("sleep", "600")
		sleep.ExtraFiles = []*os.File{f}
		if err := sleep.Start(); err != nil {
			t.Fatal(err)
		}
	})
	if Inside() {
		return
	}
	defer os.Remove(lock)
	f, err := os.OpenFile(lock, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("the contained test did not make its lock file: %v", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("a process the contained test started outlived it (its lock is still held): %v", err)
	}
	if _, err := os.Stat(filepath.Join(NetnsDir, "netns-contained-test")); err == nil {
		t.Fatalf("the contained test's namespace is visible in the host's %s", NetnsDir)
	}
}

// TestFailures: the digest of a failing child's output keeps where it
// failed and drops the dumps, and stays bounded however long the output.
func TestFailures(t *testing.T) {
	out := strings.Join([]string{
		"=== RUN   TestX",
		"=== RUN   TestX/a",
		"    x_test.go:12: the admin API never showed the call: state ringing",
		"    x_test.go:40: --- the gateway's log ---",
		"        time=1 level=INFO msg=listening",
		"        time=2 level=INFO msg=call",
		"--- FAIL: TestX (1.00s)",
		"    --- FAIL: TestX/a (1.00s)",
		"FAIL",
	}, "\n")
	want := strings.Join([]string{
		"    x_test.go:12: the admin API never showed the call: state ringing",
		"    x_test.go:40: --- the gateway's log ---",
		"--- FAIL: TestX (1.00s)",
		"    --- FAIL: TestX/a (1.00s)",
	}, "\n")
	if got := failures([]byte(out)); got != want {
		t.Errorf("failures:\n%s\nwant:\n%s", got, want)
	}

	var long strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&long, "    x_test.go:%d: %s\n", i, strings.Repeat("x", 2000))
	}
	got := strings.Split(failures([]byte(long.String())), "\n")
	if len(got) != maxDigestLines+1 || got[0] != "…" || !strings.HasPrefix(got[len(got)-1], "    x_test.go:999: ") {
		t.Errorf("a long output gives %d lines, first %.40q, last %.40q", len(got), got[0], got[len(got)-1])
	}
	for _, l := range got {
		if len(l) > maxDigestLine+len(" …") {
			t.Errorf("a line of %d bytes, want at most %d", len(l), maxDigestLine+len(" …"))
		}
	}
}
