package e2e

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The one-source flood: what a runaway client, or a load test, does from
// a single address. Unlike the flood of TestFloodRegister its requests
// are not refused by the authentication throttle (they carry no
// credentials: each gets a challenge), so only the fair shares and the
// overload shedding stand between it and the others.
const (
	oneSourceIP       = "127.0.0.3"
	oneSourceRate     = 15000
	oneSourceMinRate  = 5000
	oneSourceFor      = 10 * time.Second
	trunkOptionsEvery = 200 * time.Millisecond
)

// TestFloodOneSource floods the gateway with new REGISTERs without
// credentials from one address (127.0.0.3, ten sockets) while a trusted
// trunk (127.0.0.2) sends OPTIONS every 200 ms and a user (bob, from
// 127.0.0.1) registers every 200 ms: 90 % of the trunk's OPTIONS and of
// bob's registrations must be answered within a second, and the
// gateway's memory stays under the bound. Whether the flood was refused
// with 503 or answered depends on how much CPU the machine has left; the
// test logs it. The flood holds back while the gateway's socket holds more
// than it reads in a few milliseconds (socketWatch): fairness starts
// after the socket.
func TestFloodOneSource(t *testing.T) {
	requireProviderAddr(t)
	g := startGateway(t, gatewayOptions{
		bin:    plainBin,
		config: trunkConfig(freePort(t, "udp", providerIP)),
		env:    map[string]string{"SWITCHBOARD_LOG_LEVEL": "info"},
	})
	gw, err := net.ResolveUDPAddr("udp", g.sipAddr())
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UDPConn, 10)
	for i := range conns {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(oneSourceIP)})
		if err != nil {
			t.Fatalf("bind %s: %v", oneSourceIP, err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}

	stop := make(chan struct{})
	var sent, sendErrs atomic.Int64
	var wg sync.WaitGroup
	var sock socketWatch
	wg.Go(func() { watchSocket(g, stop, &sock) })
	start := time.Now()
	for s := range 2 {
		wg.Go(func() {
			floodSender(conns[s*5:(s+1)*5], gw, "", oneSourceRate/2, start, &sock.hold, stop, &sent, &sendErrs)
		})
	}
	var good goodStats
	wg.Go(func() { goodUser(t, gw, stop, &good) })
	var trunk goodStats
	wg.Go(func() { trunkOptions(t, gw, stop, &trunk) })
	var probe probeStats
	wg.Go(func() { probeGateway(g, stop, &probe) })

	time.Sleep(oneSourceFor) // the flood's length, not a synchronisation
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	rate := float64(sent.Load()) / elapsed.Seconds()
	t.Logf("flood from %s: %d requests in %v: %.0f/s (aim %d/s), %d send errors",
		oneSourceIP, sent.Load(), elapsed.Round(time.Millisecond), rate, oneSourceRate, sendErrs.Load())
	t.Logf("trunk's OPTIONS: %v", &trunk)
	t.Logf("user's registrations: %v", &good)
	t.Logf("gateway: max RSS %.1f MB, max open server transactions %d; %s",
		float64(probe.maxRSS)/(1<<20), probe.maxServerTx, probe.last)
	sock.log(t)

	if rate < oneSourceMinRate {
		t.Errorf("the flood reached %.0f requests/s, below the %d/s that make this test mean something", rate, oneSourceMinRate)
	}
	trunk.check(t, "trunk's OPTIONS")
	good.check(t, "user's registrations")
	probe.checkRSS(t, g)
}

// trunkOptions sends an OPTIONS to the gateway from the trunk's address
// every trunkOptionsEvery until stop, sending it again after 500 ms
// without an answer as a UDP client does; each counts when a 200 comes
// within goodWithin.
func trunkOptions(t *testing.T, gw *net.UDPAddr, stop <-chan struct{}, st *goodStats) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(providerIP)})
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	hp := c.LocalAddr().String()
	callID := "trunk-" + token()
	buf := make([]byte, 65535)
	tick := time.NewTicker(trunkOptionsEvery)
	defer tick.Stop()
	for cseq := 1; ; cseq++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		st.tries++
		msg := []byte("OPTIONS sip:" + gw.String() + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + hp + ";branch=z9hG4bKtrunk" + token() + ";rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:provider@" + providerIP + ">;tag=" + callID[len(callID)-8:] + "\r\n" +
			"To: <sip:" + gw.String() + ">\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " OPTIONS\r\n" +
			"Content-Length: 0\r\n\r\n")
		began := time.Now()
		deadline := began.Add(goodWithin)
		status := 0
		for send := 0; send < 2 && status == 0 && time.Now().Before(deadline); send++ {
			if send > 0 {
				st.retransmitted++
			}
			if _, err := c.WriteToUDP(msg, gw); err != nil {
				break
			}
			wait := time.Now().Add(500 * time.Millisecond)
			if wait.After(deadline) {
				wait = deadline
			}
			c.SetReadDeadline(wait)
			for status == 0 {
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					break
				}
				r, err := parseResponse(buf[:n])
				if err != nil || r.status < 200 {
					continue
				}
				if f := strings.Fields(r.get("CSeq")); len(f) == 2 && f[0] == strconv.Itoa(cseq) {
					status = r.status
				}
			}
		}
		st.count(status, time.Since(began))
	}
}
