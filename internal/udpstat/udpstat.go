// Package udpstat reads the kernel's table of UDP sockets (Linux's
// /proc/net/udp and /proc/net/udp6): each socket's receive queue and the
// datagrams it dropped. Tests and benches use it to see what the kernel
// queued or dropped before a reader saw it.
package udpstat

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Socket is one row of the table.
type Socket struct {
	Local   netip.AddrPort
	RxQueue uint64 // bytes in the receive queue
	Drops   uint64 // datagrams dropped, the receive buffer full
}

// Sockets returns the rows of /proc/net/udp, or of /proc/net/udp6 when v6.
func Sockets(v6 bool) ([]Socket, error) {
	file := "/proc/net/udp"
	if v6 {
		file = "/proc/net/udp6"
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("udpstat: %w", err)
	}
	return parse(string(b), file)
}

// Find returns the socket bound to local (by its family's table).
func Find(local netip.AddrPort) (Socket, error) {
	all, err := Sockets(local.Addr().Is6())
	if err != nil {
		return Socket{}, err
	}
	for _, s := range all {
		if s.Local == local {
			return s, nil
		}
	}
	return Socket{}, fmt.Errorf("udpstat: no socket on %v", local)
}

func parse(text, file string) ([]Socket, error) {
	var out []Socket
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 13 || !strings.HasSuffix(f[0], ":") {
			continue // the heading
		}
		local, err := parseAddr(f[1])
		_, rx, _ := strings.Cut(f[4], ":")
		queue, err1 := strconv.ParseUint(rx, 16, 64)
		drops, err2 := strconv.ParseUint(f[12], 10, 64)
		if err != nil || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("udpstat: odd line in %s: %q", file, line)
		}
		out = append(out, Socket{Local: local, RxQueue: queue, Drops: drops})
	}
	return out, nil
}

// parseAddr reads the kernel's "ADDR:PORT": the address as the hex of
// its 32-bit words, each in host order (little-endian on the machines
// the tests run on), the port as big hex.
func parseAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("odd address %q", a)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}
