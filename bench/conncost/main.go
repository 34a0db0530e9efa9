// Command conncost measures what an idle SIP connection costs a running
// switchboard: it opens connections to the gateway, silent ones as an
// attacker holds them (WebSockets answer pings, as a browser's do), and
// reads the gateway's own /metrics before and after: resident memory, Go
// heap and stacks, goroutines, and CPU time while opening them and while
// they sit idle. scripts/bench-conns.sh starts the gateway and runs it.
//
//	conncost -kind ws -n 4000 -ws ws://127.0.0.1:8080/ws -metrics http://127.0.0.1:8080/metrics
//	conncost -kind tcp -n 4000 -tcp 127.0.0.1:5060 -metrics http://127.0.0.1:8080/metrics
//
// Connections come from 127.1.x.y source addresses, a few per address, so
// that neither the per-address cap nor the ephemeral ports run out; run
// the gateway with caps above -n. Only loopback is ever a target.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
)

func main() {
	kind := flag.String("kind", "ws", "ws or tcp")
	n := flag.Int("n", 2000, "connections to open")
	perSource := flag.Int("per-source", 50, "connections per source address")
	wsURL := flag.String("ws", "ws://127.0.0.1:8080/ws", "the gateway's SIP WebSocket")
	tcpAddr := flag.String("tcp", "127.0.0.1:5060", "the gateway's SIP TCP listener")
	metricsURL := flag.String("metrics", "http://127.0.0.1:8080/metrics", "the gateway's /metrics")
	hold := flag.Duration("hold", 65*time.Second, "how long to hold the connections idle while measuring CPU (WebSocket pings come every 30 s)")
	burst := flag.Int("burst", 0, "bytes each connection sends once, to make the gateway buffer them: over TCP a message that lacks its last body byte, over a WebSocket a frame of keep-alive CRLFs (0: silent)")
	flag.Parse()
	if err := run(*kind, *n, *perSource, *burst, *wsURL, *tcpAddr, *metricsURL, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "conncost:", err)
		os.Exit(1)
	}
}

// sample is what conncost reads from /metrics.
type sample struct {
	rss, heap, stack, goroutines, cpu float64
	open                              float64 // switchboard_sip_connections of the transport
}

func scrape(url, transport string) (sample, error) {
	res, err := http.Get(url)
	if err != nil {
		return sample{}, err
	}
	defer res.Body.Close()
	var s sample
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "process_resident_memory_bytes":
			s.rss = v
		case name == "go_memstats_heap_inuse_bytes":
			s.heap = v
		case name == "go_memstats_stack_inuse_bytes":
			s.stack = v
		case name == "go_goroutines":
			s.goroutines = v
		case name == "process_cpu_seconds_total":
			s.cpu = v
		case strings.HasPrefix(name, "switchboard_sip_connections{") && strings.Contains(name, `transport="`+transport+`"`):
			s.open += v
		}
	}
	return s, sc.Err()
}

// partial returns a request of size bytes that lacks its last body byte.
func partial(size int) []byte {
	head := "MESSAGE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKconncost\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:a@localhost>;tag=1\r\nTo: <sip:bob@localhost>\r\nCall-ID: conncost\r\n" +
		"CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: "
	body := max(size-len(head)-12, 1)
	b := []byte(head + strconv.Itoa(body) + "\r\n\r\n")
	return append(b, strings.Repeat("x", body-1)...)
}

func run(kind string, n, perSource, burst int, wsURL, tcpAddr, metricsURL string, hold time.Duration) error {
	if kind != "ws" && kind != "tcp" {
		return fmt.Errorf("-kind %q: want ws or tcp", kind)
	}
	base, err := scrape(metricsURL, kind)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	start := time.Now()
	for i := range n {
		src := netip.AddrFrom4([4]byte{127, 1, byte(i / perSource / 250), byte(1 + i/perSource%250)})
		d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		switch kind {
		case "ws":
			hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
			c, res, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"sip"}})
			if err != nil {
				status := 0
				if res != nil {
					status = res.StatusCode
				}
				return fmt.Errorf("websocket %d from %s: %w (HTTP %d)", i, src, err, status)
			}
			if burst > 0 {
				if err := c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("\r\n", burst/2))); err != nil {
					return fmt.Errorf("websocket %d: write: %w", i, err)
				}
				// The keep-alive answer, read before CloseRead, which
				// closes on a data message.
				if _, _, err := c.Read(ctx); err != nil {
					return fmt.Errorf("websocket %d: read: %w", i, err)
				}
			}
			c.CloseRead(ctx) // reads, so it answers pings
			closers = append(closers, func() { c.CloseNow() })
		case "tcp":
			c, err := d.DialContext(ctx, "tcp", tcpAddr)
			if err != nil {
				return fmt.Errorf("tcp %d from %s: %w", i, src, err)
			}
			if burst > 0 {
				if _, err := c.Write(partial(burst)); err != nil {
					return fmt.Errorf("tcp %d: write: %w", i, err)
				}
			}
			closers = append(closers, func() { c.Close() })
		}
	}
	opened := time.Since(start)

	// The gateway counts a connection once it has taken it in; wait for all.
	var after sample
	deadline := time.Now().Add(30 * time.Second)
	for {
		if after, err = scrape(metricsURL, kind); err != nil {
			return err
		}
		if int(after.open-base.open) >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gateway counts %v connections, want %d more than %v", after.open, n, base.open)
		}
		time.Sleep(100 * time.Millisecond)
	}
	openCPU := after.cpu - base.cpu
	time.Sleep(2 * time.Second) // let the last handshakes' garbage be collected before reading memory
	if after, err = scrape(metricsURL, kind); err != nil {
		return err
	}
	time.Sleep(hold)
	end, err := scrape(metricsURL, kind)
	if err != nil {
		return err
	}
	if int(end.open-base.open) < n {
		return errors.New("connections were closed during the hold: raise SWITCHBOARD_UNREGISTERED_IDLE_TIMEOUT above -hold")
	}

	f := float64(n)
	fmt.Printf("%s: %d idle connections, %d bytes sent on each, opened in %v (%.0f/s)\n", kind, n, burst, opened.Round(time.Millisecond), f/opened.Seconds())
	fmt.Printf("  per connection: RSS %.1f KiB, Go heap %.1f KiB, stacks %.1f KiB, %.2f goroutines\n",
		(after.rss-base.rss)/f/1024, (after.heap-base.heap)/f/1024, (after.stack-base.stack)/f/1024, (after.goroutines-base.goroutines)/f)
	fmt.Printf("  CPU to open them: %.3f s (%.0f µs each)\n", openCPU, openCPU/f*1e6)
	fmt.Printf("  CPU while idle for %v: %.3f s (%.2f%% of one core; %.2f µs per connection per second)\n",
		hold, end.cpu-after.cpu, (end.cpu-after.cpu)/hold.Seconds()*100, (end.cpu-after.cpu)/hold.Seconds()/f*1e6)
	return nil
}
