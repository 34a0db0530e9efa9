// Command videophone is a SIP video phone for the gateway's browser tests,
// built on pion/rtp: SIP over UDP on loopback (REGISTER with digest, an
// INVITE answered or placed, re-INVITE, INFO, BYE), PCMU audio and VP8 or
// H.264 (packetization mode 1) video over plain RTP/AVP. Its video is
// synthesised (flat pictures a real decoder takes, see frames.go); it
// sends a key frame first and whenever it is asked, by RTCP PLI or FIR or
// by SIP INFO picture_fast_update (RFC 5168). It tells what happens as
// JSON lines on stdout ({"event": ...}); it takes commands on stdin, one a
// line: "gap" (lose the next video frames, so the far end must ask for a
// key frame), "bye" (hang up).
//
//	videophone -gateway 127.0.0.1:5060 -user 1000 -password secret -video vp8 [-rtcp-fb] [-dial alice] [-no-video]
//
// It is a test peer, not a product: one call at a time, no retransmission
// (loopback loses nothing), no forking.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.gateway, "gateway", "127.0.0.1:5060", "the gateway's SIP UDP address")
	flag.StringVar(&o.domain, "domain", "", "the SIP domain (default: the gateway's host)")
	flag.StringVar(&o.user, "user", "1000", "user name")
	flag.StringVar(&o.password, "password", "", "password")
	flag.StringVar(&o.video, "video", "vp8", "video codec: vp8 or h264")
	flag.BoolVar(&o.rtcpFB, "rtcp-fb", false, "offer and answer a=rtcp-fb:* nack pli and ccm fir")
	flag.BoolVar(&o.noVideo, "no-video", false, "offer no video (a re-INVITE may add it)")
	flag.StringVar(&o.dial, "dial", "", "call this user once registered")
	flag.Parse()
	if err := run(o); err != nil {
		emit("error", map[string]any{"error": err.Error()})
		os.Exit(1)
	}
}

type options struct {
	gateway, domain, user, password, video, dial string
	rtcpFB, noVideo                              bool
}

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

// emit writes one event line.
func emit(event string, fields map[string]any) {
	m := map[string]any{"event": event, "t": time.Now().UnixMilli()}
	for k, v := range fields {
		m[k] = v
	}
	out.Lock()
	defer out.Unlock()
	_ = out.enc.Encode(m)
}

func token() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func run(o options) error {
	o.video = strings.ToLower(o.video)
	if o.video != "vp8" && o.video != "h264" {
		return fmt.Errorf("videophone: -video %q: want vp8 or h264", o.video)
	}
	gw, err := netip.ParseAddrPort(o.gateway)
	if err != nil || !gw.Addr().IsLoopback() {
		return fmt.Errorf("videophone: -gateway %q: want a loopback address and port", o.gateway)
	}
	if o.domain == "" {
		o.domain = gw.Addr().String()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	m, err := newMedia(o)
	if err != nil {
		return err
	}
	defer m.close()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("videophone: sip socket: %w", err)
	}
	defer conn.Close()
	p := &phone{o: o, gw: gw, conn: conn, media: m, waiting: map[string]chan *response{}}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close() // ends the reader before wg.Wait
	wg.Go(p.read)
	wg.Go(m.receive)
	go p.commands(bufio.NewScanner(os.Stdin)) // ends with the process

	if err := p.register(ctx); err != nil {
		return err
	}
	emit("registered", map[string]any{"user": o.user, "sip": conn.LocalAddr().String()})
	if o.dial != "" {
		if err := p.invite(ctx, o.dial); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// commands reads the test's commands from stdin.
func (p *phone) commands(sc *bufio.Scanner) {
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case "gap":
			p.media.gap.Store(3)
			emit("gap", nil)
		case "bye":
			if err := p.bye(); err != nil {
				emit("error", map[string]any{"error": err.Error()})
			}
		case "":
		default:
			emit("error", map[string]any{"error": "unknown command " + sc.Text()})
		}
	}
}

var errTimeout = errors.New("videophone: no final response")
