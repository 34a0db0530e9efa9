package netsim

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/netns"
)

// TestNATAndSealing builds an office behind NAT and a server on a
// public address: the office's PC reaches the server, which sees the
// office's public address; nothing reaches the PC's private address from
// outside; a firewall rule's counter counts; the Net is sealed, and
// Sealed reports each way out that is added afterwards.
func TestNATAndSealing(t *testing.T) {
	netns.Run(t, netns.Options{Contained: true, Timeout: time.Minute}, func(t *testing.T) {
		n := New(t, "internet")
		office := n.AddRouter("office")
		pc := n.AddHost("pc")
		lan := n.AddSwitch("office-lan")
		n.Connect(End{Host: n.Root(), Addrs: []string{"198.51.100.1/24"}}, End{Host: office, Iface: "wan", Addrs: []string{"198.51.100.2/24"}})
		n.Connect(End{Host: office, Iface: "lan", Addrs: []string{"10.0.0.1/24"}}, End{Host: lan})
		n.Connect(End{Host: pc, Iface: "eth0", Addrs: []string{"10.0.0.10/24"}}, End{Host: lan})
		pc.AddRoute("default", "10.0.0.1")
		office.AddRoute("default", "198.51.100.1")
		office.Masquerade("wan")
		sent := office.Count("FORWARD", "-i", "lan", "-p", "udp", "--dport", "9999")

		if err := n.Sealed(); err != nil {
			t.Fatalf("Sealed: %v", err)
		}

		// The server is the root itself: the test listens there.
		srv, err := net.ListenPacket("udp4", "198.51.100.1:9999")
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		// bash's /dev/udp sends one datagram from the PC.
		pc.Run("bash", "-c", "echo hello >/dev/udp/198.51.100.1/9999")
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		nr, from, err := srv.ReadFrom(buf)
		if err != nil {
			t.Fatalf("nothing from the PC: %v", err)
		}
		if got := from.(*net.UDPAddr).IP.String(); got != "198.51.100.2" || strings.TrimSpace(string(buf[:nr])) != "hello" {
			t.Fatalf("got %q from %v; want hello from the office's public address 198.51.100.2", buf[:nr], from)
		}
		if got := sent.Packets(); got != 1 {
			t.Errorf("the office's counter says %d packets, want 1", got)
		}
		// The internet has no route to a private address.
		if c, err := net.Dial("udp4", "10.0.0.10:9999"); err == nil {
			_, err = c.Write([]byte("x"))
			c.Close()
			if err == nil {
				t.Error("the root reached for the PC's private address")
			}
		}

		// Each way out is found.
		// A tap hands packets to a program, which may send them anywhere.
		n.Root().ip("tuntap", "add", "dev", "leak0", "mode", "tap")
		n.Root().ip("netns", "add", "outsider")
		n.Root().ip("link", "add", "name", "leak1", "netns", "office", "type", "veth", "peer", "name", "x", "netns", "outsider")
		n.Root().ip("addr", "add", "192.0.2.1/24", "dev", "leak0")
		n.Root().ip("link", "set", "leak0", "up")
		n.Root().ip("route", "add", "default", "via", "192.0.2.2")
		err = n.Sealed()
		if err == nil {
			t.Fatal("Sealed found no way out")
		}
		for _, want := range []string{
			`internet: interface leak0 is a "tun"`,
			`office: veth leak1 links to a namespace outside the simulated internet ("outsider")`,
			"internet: the root has a default route",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Sealed: %v\nwant it to say %q", err, want)
			}
		}
	})
}

// TestNAT1To1 maps a public address to a private server: a client on the
// internet reaches it at the public address, and it answers from there.
func TestNAT1To1(t *testing.T) {
	netns.Run(t, netns.Options{Contained: true, Timeout: time.Minute}, func(t *testing.T) {
		n := New(t, "internet")
		dc := n.AddRouter("dc")
		vm := n.AddHost("vm")
		n.Connect(End{Host: n.Root(), Addrs: []string{"203.0.113.1/24"}}, End{Host: dc, Iface: "wan", Addrs: []string{"203.0.113.2/24", "203.0.113.20/24"}})
		n.Connect(End{Host: dc, Iface: "lan", Addrs: []string{"172.16.0.1/24"}}, End{Host: vm, Iface: "eth0", Addrs: []string{"172.16.0.10/24"}})
		vm.AddRoute("default", "172.16.0.1")
		dc.AddRoute("default", "203.0.113.1")
		dc.NAT1To1("wan", "203.0.113.20", "172.16.0.10")
		if err := n.Sealed(); err != nil {
			t.Fatalf("Sealed: %v", err)
		}

		srv, err := net.ListenPacket("udp4", "203.0.113.1:5000")
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		// Out: the VM's datagram leaves from the public address.
		vm.Run("bash", "-c", "echo out >/dev/udp/203.0.113.1/5000")
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		_, from, err := srv.ReadFrom(buf)
		if err != nil {
			t.Fatalf("nothing from the VM: %v", err)
		}
		if got := from.(*net.UDPAddr).IP.String(); got != "203.0.113.20" {
			t.Fatalf("the VM's datagram came from %s, want its public address 203.0.113.20", got)
		}
		// In: a connection to the public address is forwarded to the VM,
		// which refuses it (nothing listens there).
		toVM := dc.Count("FORWARD", "-o", "lan", "-d", "172.16.0.10", "-p", "tcp", "--dport", "22")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", "203.0.113.20:22")
		if err == nil {
			c.Close()
			t.Fatal("a connection to a closed port of the VM was accepted")
		}
		if !strings.Contains(err.Error(), "refused") {
			t.Fatalf("dialing the public address: %v; want a refusal", err)
		}
		if got := toVM.Packets(); got == 0 {
			t.Fatal("the connection to the public address was not forwarded to the VM")
		}
	})
}
