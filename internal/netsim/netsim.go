// Package netsim builds a small internet inside a test: hosts, routers and
// switches are network namespaces, joined by veth pairs, with the
// addresses and routes the test gives them, NAT and firewall rules made
// with iptables, and programs started in them with `ip netns exec`.
//
// It runs only inside a contained sandbox of internal/netns
// (netns.Options.Contained): the namespaces are named ones on the
// sandbox's own /run/netns, and the test's own namespace, which starts
// sealed with only loopback, is the first host (New's root), typically the
// internet's core router. Everything goes when the sandbox ends, whatever
// way it ends. Sealed proves that nothing built links to a namespace
// outside the sandbox and that no default route leads out of it.
//
//	n := netsim.New(t, "internet")
//	office := n.AddRouter("office")
//	n.Connect(netsim.End{Host: n.Root(), Addrs: []string{"198.51.100.1/24"}},
//		netsim.End{Host: office, Iface: "wan", Addrs: []string{"198.51.100.2/24"}})
//	office.Masquerade("wan")
//
// The simulated internet is IPv4 only: IPv6 is off in every namespace.
// It needs root, ip (iproute2), iptables and sysctl (procps), which
// scripts/deps.sh installs; without them the test fails with a message.
package netsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/netns"
)

// commandTimeout bounds each ip, iptables and sysctl command of the kit.
const commandTimeout = 10 * time.Second

// maxIface is the longest interface name Linux takes (IFNAMSIZ - 1).
const maxIface = 15

// bridgeName is the bridge of every switch.
const bridgeName = "switch"

// Net is a simulated internet: the hosts a test added, the first of which
// is the test's own namespace.
type Net struct {
	t     testing.TB
	mu    sync.Mutex
	hosts []*Host
}

// Host is a network namespace of a Net: a host, a router or a switch.
type Host struct {
	// Name is the namespace's name (ip netns), unique in its Net.
	Name string

	n        *Net
	root     bool // the test's own namespace
	isSwitch bool
	mu       sync.Mutex
	rules    int // counter rules added, for their comments
}

// New makes the namespace the test runs in the first host of a new Net,
// named root. The test must run in a contained sandbox (netns.Run with
// Options.Contained); New fails it otherwise, and when a tool is missing.
func New(t testing.TB, root string) *Net {
	t.Helper()
	if !netns.Contained() {
		t.Fatal("netsim: the test must run in a contained sandbox: netns.Run with Options{Contained: true}")
	}
	for tool, pkg := range map[string]string{"ip": "iproute2", "iptables": "iptables", "sysctl": "procps"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("netsim: %s not found (Debian package %s; scripts/deps.sh installs it): %v", tool, pkg, err)
		}
	}
	n := &Net{t: t}
	h := &Host{Name: root, n: n, root: true}
	// Named, so that ip names it as the peer of the veths that reach it.
	h.ip("netns", "attach", root, strconv.Itoa(os.Getpid()))
	h.init()
	h.Sysctl("net.ipv4.ip_forward", "1")
	n.hosts = append(n.hosts, h)
	return n
}

// Root returns the test's own namespace, the first host.
func (n *Net) Root() *Host { return n.hosts[0] }

// AddHost adds a namespace named name with loopback up, IPv6 off and no
// forwarding: an end host.
func (n *Net) AddHost(name string) *Host {
	n.t.Helper()
	return n.add(name, false)
}

// AddRouter adds a host that forwards IPv4 between its interfaces.
func (n *Net) AddRouter(name string) *Host {
	n.t.Helper()
	h := n.add(name, false)
	h.Sysctl("net.ipv4.ip_forward", "1")
	return h
}

// AddSwitch adds an Ethernet switch: a namespace with one bridge, to which
// every interface Connect gives it is attached. A switch has no address.
func (n *Net) AddSwitch(name string) *Host {
	n.t.Helper()
	h := n.add(name, true)
	h.ip("link", "add", "name", bridgeName, "type", "bridge")
	h.ip("link", "set", bridgeName, "up")
	return h
}

func (n *Net) add(name string, isSwitch bool) *Host {
	n.t.Helper()
	n.mu.Lock()
	for _, h := range n.hosts {
		if h.Name == name {
			n.mu.Unlock()
			n.t.Fatalf("netsim: a host named %q exists already", name)
		}
	}
	h := &Host{Name: name, n: n, isSwitch: isSwitch}
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	n.Root().ip("netns", "add", name)
	h.init()
	return h
}

// init brings loopback up and turns IPv6 off, for interfaces to come too.
func (h *Host) init() {
	h.n.t.Helper()
	h.ip("link", "set", "lo", "up")
	h.Sysctl("net.ipv6.conf.all.disable_ipv6", "1")
	h.Sysctl("net.ipv6.conf.default.disable_ipv6", "1")
}

// End is one end of a link.
type End struct {
	Host *Host
	// Iface names the interface in Host (at most 15 characters); the
	// other end's host name when empty.
	Iface string
	// Addrs are its addresses, as prefixes ("192.0.2.1/24"). An end on a
	// switch has none.
	Addrs []string
}

// Connect links two hosts with a veth pair, gives each end its addresses
// and brings both up. It returns the names of the two interfaces.
func (n *Net) Connect(a, b End) (aIface, bIface string) {
	n.t.Helper()
	a.Iface = ifaceName(a.Iface, b.Host.Name)
	b.Iface = ifaceName(b.Iface, a.Host.Name)
	n.Root().ip("link", "add", "name", a.Iface, "netns", a.Host.Name, "type", "veth", "peer", "name", b.Iface, "netns", b.Host.Name)
	for _, e := range []End{a, b} {
		if e.Host.isSwitch {
			if len(e.Addrs) > 0 {
				n.t.Fatalf("netsim: %s is a switch and takes no address", e.Host.Name)
			}
			e.Host.ip("link", "set", e.Iface, "master", bridgeName)
		}
		for _, addr := range e.Addrs {
			e.Host.AddAddr(e.Iface, addr)
		}
		e.Host.ip("link", "set", e.Iface, "up")
	}
	return a.Iface, b.Iface
}

func ifaceName(name, peer string) string {
	if name == "" {
		name = peer
	}
	if len(name) > maxIface {
		name = name[:maxIface]
	}
	return name
}

// AddAddr gives iface one more address, a prefix.
func (h *Host) AddAddr(iface, prefix string) {
	h.n.t.Helper()
	h.ip("addr", "add", prefix, "dev", iface)
}

// AddRoute routes dst ("default" or a prefix) via a gateway address.
func (h *Host) AddRoute(dst, via string) {
	h.n.t.Helper()
	h.ip("route", "add", dst, "via", via)
}

// Sysctl sets a kernel setting of the namespace ("net.ipv4.ip_forward").
func (h *Host) Sysctl(key, value string) {
	h.n.t.Helper()
	h.Run("sysctl", "-q", "-w", key+"="+value)
}

// IPTables runs iptables in the namespace with args, waiting for the
// lock, and returns its output.
func (h *Host) IPTables(args ...string) string {
	h.n.t.Helper()
	return h.Run("iptables", append([]string{"-w", "5"}, args...)...)
}

// Masquerade makes h a NAT router for what leaves through out: every
// connection gets out's address as its source (iptables MASQUERADE), and
// only the answers of connections made from inside come back in.
func (h *Host) Masquerade(out string) {
	h.n.t.Helper()
	h.IPTables("-t", "nat", "-A", "POSTROUTING", "-o", out, "-j", "MASQUERADE")
}

// NAT1To1 maps a public address of h to a private host behind it, in both
// directions, as clouds map a VM's public address: what arrives for
// public goes to private, and what private sends out through out leaves
// from public. h must hold public on out (AddAddr) to receive for it.
func (h *Host) NAT1To1(out, public, private string) {
	h.n.t.Helper()
	h.IPTables("-t", "nat", "-A", "PREROUTING", "-d", public, "-j", "DNAT", "--to-destination", private)
	h.IPTables("-t", "nat", "-A", "POSTROUTING", "-o", out, "-s", private, "-j", "SNAT", "--to-source", public)
}

// Counter counts the packets that matched one iptables rule.
type Counter struct {
	h       *Host
	chain   string
	comment string
}

// Count appends a rule to chain of the filter table, with spec as its
// match and target (no target: it only counts), and returns its counter.
func (h *Host) Count(chain string, spec ...string) *Counter {
	h.n.t.Helper()
	h.mu.Lock()
	h.rules++
	c := &Counter{h: h, chain: chain, comment: fmt.Sprintf("netsim-count-%d", h.rules)}
	h.mu.Unlock()
	args := append([]string{"-A", chain}, spec...)
	h.IPTables(append(args, "-m", "comment", "--comment", c.comment)...)
	return c
}

// Packets returns the number of packets the rule matched so far.
func (c *Counter) Packets() uint64 {
	c.h.n.t.Helper()
	out := c.h.IPTables("-L", c.chain, "-n", "-v", "-x")
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "/* "+c.comment+" */") {
			continue
		}
		f := strings.Fields(line)
		if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			return n
		}
	}
	c.h.n.t.Fatalf("netsim: %s: no counter %s in chain %s:\n%s", c.h.Name, c.comment, c.chain, out)
	return 0
}

// Command returns a command that runs name with args in h (with `ip netns
// exec`; directly in the root). It is ended with ctx, as
// exec.CommandContext's.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if h.root {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// Run runs name with args in h to its end, within a deadline, and returns
// its output; a failure fails the test.
func (h *Host) Run(name string, args ...string) string {
	h.n.t.Helper()
	out, err := h.run(name, args...)
	if err != nil {
		h.n.t.Fatalf("netsim: %s: %v", h.Name, err)
	}
	return out
}

func (h *Host) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := h.Command(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return string(out), nil
}

// ip runs ip with args on h's namespace (ip -n).
func (h *Host) ip(args ...string) string {
	h.n.t.Helper()
	out, err := h.ipOut(args...)
	if err != nil {
		h.n.t.Fatalf("netsim: %v", err)
	}
	return out
}

func (h *Host) ipOut(args ...string) (string, error) {
	if args[0] != "netns" {
		args = append([]string{"-n", h.Name}, args...)
	}
	root := &Host{root: true}
	return root.run("ip", args...)
}

// link is what Sealed reads of an interface (ip -j -d link).
type link struct {
	Name     string `json:"ifname"`
	LinkType string `json:"link_type"`
	Info     *struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
	// PeerNetnsID is set on a veth whose peer is in another namespace.
	PeerNetnsID *int `json:"link_netnsid"`
}

// peerNetns matches ip's "N: NAME@PEER: ... link-netns NETNS" or
// "... link-netnsid ID" (a namespace without a name here).
var peerNetns = regexp.MustCompile(`^\d+: ([^:@ ]+)[@:].*? link-netns(id)? (\S+)`)

// Sealed proves that the simulated internet has no way out of the
// sandbox: every interface of every host is loopback, a veth whose other
// end is in a host of the Net, or a bridge; the root has no default
// route, and every other default route goes through an address of a host
// of the Net. It returns every breach found.
func (n *Net) Sealed() error {
	n.mu.Lock()
	hosts := append([]*Host(nil), n.hosts...)
	n.mu.Unlock()
	names := map[string]bool{}
	for _, h := range hosts {
		names[h.Name] = true
	}
	owned := map[netip.Addr]string{}
	for _, h := range hosts {
		addrs, err := h.addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			owned[a] = h.Name
		}
	}
	var errs []error
	for _, h := range hosts {
		if err := h.sealed(names, owned); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (h *Host) sealed(names map[string]bool, owned map[netip.Addr]string) error {
	out, err := h.ipOut("-j", "-d", "link", "show")
	if err != nil {
		return err
	}
	var links []link
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return fmt.Errorf("%s: ip -j link: %w", h.Name, err)
	}
	text, err := h.ipOut("-o", "-d", "link", "show")
	if err != nil {
		return err
	}
	peers := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if m := peerNetns.FindStringSubmatch(line); m != nil {
			if m[2] == "id" {
				peers[m[1]] = "" // a namespace with no name in the sandbox
			} else {
				peers[m[1]] = m[3]
			}
		}
	}
	var errs []error
	for _, l := range links {
		kind := ""
		if l.Info != nil {
			kind = l.Info.Kind
		}
		switch {
		case l.LinkType == "loopback":
		case kind == "bridge":
		case kind == "veth":
			if l.PeerNetnsID == nil {
				continue // both ends here
			}
			if peer := peers[l.Name]; !names[peer] {
				errs = append(errs, fmt.Errorf("%s: veth %s links to a namespace outside the simulated internet (%q)", h.Name, l.Name, peer))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: interface %s is a %q (%s), not loopback, veth or bridge", h.Name, l.Name, kind, l.LinkType))
		}
	}
	for _, family := range []string{"-4", "-6"} {
		out, err := h.ipOut(family, "-j", "route", "show", "table", "all")
		if err != nil {
			return err
		}
		var routes []struct {
			Dst     string `json:"dst"`
			Gateway string `json:"gateway"`
			Dev     string `json:"dev"`
		}
		if err := json.Unmarshal([]byte(out), &routes); err != nil {
			return fmt.Errorf("%s: ip %s -j route: %w", h.Name, family, err)
		}
		for _, r := range routes {
			if r.Dst != "default" {
				continue
			}
			gw, err := netip.ParseAddr(r.Gateway)
			switch {
			case h.root:
				errs = append(errs, fmt.Errorf("%s: the root has a default route (via %q dev %s)", h.Name, r.Gateway, r.Dev))
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: a default route without a gateway (dev %s)", h.Name, r.Dev))
			case owned[gw] == "" || owned[gw] == h.Name:
				errs = append(errs, fmt.Errorf("%s: the default route goes via %s, which no other host of the simulated internet holds", h.Name, gw))
			}
		}
	}
	return errors.Join(errs...)
}

// addrs returns h's addresses.
func (h *Host) addrs() ([]netip.Addr, error) {
	out, err := h.ipOut("-j", "addr", "show")
	if err != nil {
		return nil, err
	}
	var ifs []struct {
		Addrs []struct {
			Local string `json:"local"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &ifs); err != nil {
		return nil, fmt.Errorf("%s: ip -j addr: %w", h.Name, err)
	}
	var addrs []netip.Addr
	for _, i := range ifs {
		for _, a := range i.Addrs {
			if ip, err := netip.ParseAddr(a.Local); err == nil {
				addrs = append(addrs, ip)
			}
		}
	}
	return addrs, nil
}
