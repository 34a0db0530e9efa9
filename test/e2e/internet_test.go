package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/netns"
	"github.com/switchboard/switchboard/internal/netsim"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// The simulated internet of TestCallsAcrossTheInternet. Public addresses
// are documentation ranges (RFC 5737); the LANs are private ranges behind
// NAT. The internet's core router is the test's own namespace.
//
//	                       core (the test)
//	   203.0.113.1/24 ─────┤├───── 198.51.100.1/24 ─── office NAT ─── 10.10.0.0/24: pc (Chromium)
//	         │             └────── 192.0.2.1/24 ───── home NAT ───── 192.168.1.0/24: phone (sipp)
//	datacenter switch
//	├─ gateway   203.0.113.10      (voice.example.com: public address)
//	├─ turn      203.0.113.30      (turn.example.net: coturn)
//	└─ cloud NAT 203.0.113.2, .20 ── 172.16.0.0/24: vm 172.16.0.10
//	                                 (voice.example.org: 1:1 NAT, SWITCHBOARD_PUBLIC_IP)
const (
	coreDC, coreOffice, coreHome = "203.0.113.1", "198.51.100.1", "192.0.2.1"
	gatewayIP                    = "203.0.113.10"
	turnIP                       = "203.0.113.30"
	cloudWAN, vmPublicIP, vmIP   = "203.0.113.2", "203.0.113.20", "172.16.0.10"
	officeWAN, pcIP              = "198.51.100.2", "10.10.0.10"
	homeWAN, phoneIP             = "192.0.2.2", "192.168.1.10"

	publicName, natName, turnName = "voice.example.com", "voice.example.org", "turn.example.net"

	// The desk phone's SIP and RTP ports.
	phoneSIPPort, phoneRTPPort = 5060, 6000
	// internetTimeout bounds the whole test, setup and teardown included.
	internetTimeout = 3 * time.Minute
	// callWait bounds each wait of a call: setup, audio, hangup.
	callWait = 15 * time.Second
	// audioPackets is half a second of audio (20 ms packets): what each
	// direction must carry before a call counts as talking.
	audioPackets = 25
	// turnSecret is the shared secret of the gateways and coturn.
	turnSecret = "internet-test-turn-secret-0123456789"
)

// simInternet is the topology, built.
type simInternet struct {
	n                                    *netsim.Net
	gateway, vm, turn, office, pc, phone *netsim.Host
	home                                 *netsim.Host
	toPhone                              *netsim.Counter // RTP that reached the phone's LAN
}

func buildInternet(t *testing.T) *simInternet {
	t.Helper()
	n := netsim.New(t, "internet")
	w := &simInternet{n: n}
	core := n.Root()
	dc := n.AddSwitch("datacenter")
	n.Connect(netsim.End{Host: core, Iface: "dc", Addrs: []string{coreDC + "/24"}}, netsim.End{Host: dc})

	w.gateway = n.AddHost("gateway")
	n.Connect(netsim.End{Host: w.gateway, Iface: "eth0", Addrs: []string{gatewayIP + "/24"}}, netsim.End{Host: dc})
	w.gateway.AddRoute("default", coreDC)

	w.turn = n.AddHost("turn")
	n.Connect(netsim.End{Host: w.turn, Iface: "eth0", Addrs: []string{turnIP + "/24"}}, netsim.End{Host: dc})
	w.turn.AddRoute("default", coreDC)

	cloud := n.AddRouter("cloud")
	n.Connect(netsim.End{Host: cloud, Iface: "wan", Addrs: []string{cloudWAN + "/24", vmPublicIP + "/24"}}, netsim.End{Host: dc})
	w.vm = n.AddHost("vm")
	n.Connect(netsim.End{Host: cloud, Iface: "lan", Addrs: []string{"172.16.0.1/24"}}, netsim.End{Host: w.vm, Iface: "eth0", Addrs: []string{vmIP + "/24"}})
	cloud.AddRoute("default", coreDC)
	w.vm.AddRoute("default", "172.16.0.1")
	cloud.NAT1To1("wan", vmPublicIP, vmIP)

	w.office, w.pc = natLAN(n, "office", coreOffice, officeWAN, "10.10.0.1", "pc", pcIP)
	// The office's firewall: what the LAN sends out goes through egress,
	// which each path of the test fills.
	w.office.IPTables("-N", "egress")
	w.office.IPTables("-A", "FORWARD", "-i", "lan", "-o", "wan", "-j", "egress")

	w.home, w.phone = natLAN(n, "home", coreHome, homeWAN, "192.168.1.1", "phone", phoneIP)
	w.toPhone = w.home.Count("FORWARD", "-o", "lan", "-d", phoneIP, "-p", "udp", "--dport", fmt.Sprint(phoneRTPPort))

	if err := n.Sealed(); err != nil {
		t.Fatalf("the simulated internet has a way out of the sandbox: %v", err)
	}
	return w
}

// natLAN adds a router named name on a /24 of its own to the core (the
// core at coreAddr, the router's WAN at wan), masquerading for a LAN /24
// where it is lanGW and one host, hostName, is hostIP.
func natLAN(n *netsim.Net, name, coreAddr, wan, lanGW, hostName, hostIP string) (router, host *netsim.Host) {
	router = n.AddRouter(name)
	n.Connect(netsim.End{Host: n.Root(), Iface: name, Addrs: []string{coreAddr + "/24"}}, netsim.End{Host: router, Iface: "wan", Addrs: []string{wan + "/24"}})
	host = n.AddHost(hostName)
	n.Connect(netsim.End{Host: router, Iface: "lan", Addrs: []string{lanGW + "/24"}}, netsim.End{Host: host, Iface: "eth0", Addrs: []string{hostIP + "/24"}})
	router.AddRoute("default", coreAddr)
	host.AddRoute("default", lanGW)
	router.Masquerade("wan")
	return router, host
}

// officePath is what the office's firewall lets out, and the way the
// browser's media must then take.
type officePath struct {
	name string
	// block fills the egress chain and returns the counter of what it
	// drops (nil when it drops nothing).
	block func(office *netsim.Host) *netsim.Counter
	// check says whether the web leg's transport, as the admin API tells
	// it, is this path's, for a gateway whose ICE address is ice.
	check func(tr *legTransport, ice string) error
	// fast: the gateway must relay the leg's audio on its fast path (a
	// UDP pair on its ICE port). Chromium's DTLS hellos are what the
	// fast path's keys come from, and the load bench's pion browsers do
	// not send them as Chromium does (its ClientHello comes in two
	// fragments), so this is the fast path's only test with Chromium.
	fast bool
}

var officePaths = []officePath{
	{
		name:  "open",
		block: func(*netsim.Host) *netsim.Counter { return nil },
		check: func(tr *legTransport, ice string) error {
			// UDP straight to the gateway, from the office NAT's address,
			// which the gateway learns from the checks (prflx) or STUN
			// (srflx).
			return tr.expect(candidate{"host", "udp", ice}, []string{"srflx", "prflx"}, "udp", officeWAN)
		},
		fast: true,
	},
	{
		name: "UDP blocked, ICE-TCP",
		block: func(office *netsim.Host) *netsim.Counter {
			// The TURN server is out of reach too: otherwise Chromium
			// may settle on a relay over TLS, which the next path
			// proves, and this one would prove nothing of ICE-TCP.
			office.IPTables("-A", "egress", "-d", turnIP, "-j", "DROP")
			return office.Count("egress", "-p", "udp", "-j", "DROP")
		},
		check: func(tr *legTransport, ice string) error {
			// TCP to the gateway's ICE port: the browser's active
			// candidate, seen from the office NAT's address.
			return tr.expect(candidate{"host", "tcp", ice}, []string{"host", "srflx", "prflx"}, "tcp", officeWAN)
		},
	},
	{
		name: "only HTTPS out, TURN over TLS",
		block: func(office *netsim.Host) *netsim.Counter {
			office.IPTables("-A", "egress", "-p", "tcp", "--dport", "443", "-j", "ACCEPT")
			return office.Count("egress", "-j", "DROP")
		},
		check: func(tr *legTransport, ice string) error {
			// The browser's relay on coturn, which relays over UDP.
			return tr.expect(candidate{"host", "udp", ice}, []string{"relay"}, "udp", turnIP)
		},
		fast: true,
	},
}

// site is one gateway of the test, as the world reaches it.
type site struct {
	name   string // of the subtest
	domain string // its SIP domain and the host name of its certificate
	public string // the address peers reach it at
	g      *gateway
	admin  *http.Client // HTTPS to the admin API, trusting the test CA
}

// TestCallsAcrossTheInternet: issue 11 point 5. A browser in an office
// behind NAT (headless Chromium running the bundled softphone over HTTPS
// and WSS) and a desk phone at home behind another NAT (sipp, registered
// over UDP) call each other both ways through a gateway on a public
// address, and again through a gateway behind 1:1 NAT
// (SWITCHBOARD_PUBLIC_IP); each with the office open, with UDP and the
// TURN server blocked (media over ICE-TCP), and with nothing but HTTPS
// let out (media through coturn over TLS, with credentials from
// /api/ice-servers). Each call
// carries audio both ways (the page's getStats, the admin API's counters,
// the home router's count of what reached the phone), and the admin API
// names the path the browser's media took. The namespaces have no way out
// of the sandbox, and the sandbox takes every process with it when it
// ends. It needs root.
func TestCallsAcrossTheInternet(t *testing.T) {
	isolated(t, netns.Options{Contained: true, Timeout: internetTimeout}, func(t *testing.T) {
		requireSipp(t)
		w := buildInternet(t)

		dir := t.TempDir()
		ca := transporttest.NewCA(t)
		caFile := filepath.Join(dir, "ca.pem")
		ca.WriteFile(t, caFile)
		turnCert, turnKey := ca.IssueFiles(t, dir, turnName, turnIP)
		startCoturnWith(t, coturnOptions{secret: turnSecret, in: w.turn, ip: turnIP, certFile: turnCert, keyFile: turnKey})

		sites := []*site{
			startSite(t, ca, dir, "public address", publicName, gatewayIP, gatewayOptions{in: w.gateway, host: gatewayIP}),
			startSite(t, ca, dir, "behind 1:1 NAT", natName, vmPublicIP, gatewayOptions{
				in: w.vm, host: "0.0.0.0", reach: vmPublicIP,
				env: map[string]string{"SWITCHBOARD_PUBLIC_IP": vmPublicIP},
			}),
		}
		browser := startChromium(t, w.pc, caFile, map[string]string{publicName: gatewayIP, natName: vmPublicIP, turnName: turnIP})
		tone := pcmuTone(10)

		for _, s := range sites {
			t.Run(s.name, func(t *testing.T) {
				p := browser.open(t, s.domain, "https://"+s.domain+"/?autoanswer=1")
				var reg string
				p.eval(t, fmt.Sprintf("window.softphone.register('alice', %q)", users["alice"]), &reg)
				if reg != "registered" {
					t.Fatalf("alice's registration: %s", reg)
				}
				registerDeskPhone(t, s, w)
				s.checkBindings(t)
				for _, path := range officePaths {
					w.office.IPTables("-F", "egress")
					dropped := path.block(w.office)
					t.Run(path.name+"/browser calls phone", func(t *testing.T) {
						softphoneCallsPhone(t, s, w, p, path, tone)
					})
					t.Run(path.name+"/phone calls browser", func(t *testing.T) {
						phoneCallsSoftphone(t, s, w, p, path, tone)
					})
					if dropped != nil && dropped.Packets() == 0 {
						t.Errorf("%s: the office's firewall dropped nothing: the browser never tried the blocked way", path.name)
					}
				}
				if problems := p.problems(); len(problems) > 0 {
					t.Errorf("the page had problems:\n%s", strings.Join(problems, "\n"))
				}
			})
		}
		if err := w.n.Sealed(); err != nil {
			t.Errorf("after the calls, the simulated internet has a way out of the sandbox: %v", err)
		}
	})
}

// startSite starts a gateway in a host of the simulated internet, with
// HTTPS on 443 for its domain, the admin API, and TURN for browsers.
func startSite(t *testing.T, ca *transporttest.CA, dir, name, domain, public string, o gatewayOptions) *site {
	t.Helper()
	cert, key := ca.IssueFiles(t, dir, domain, public)
	if o.env == nil {
		o.env = map[string]string{}
	}
	for k, v := range map[string]string{
		"SWITCHBOARD_DOMAIN":      domain,
		"SWITCHBOARD_HTTPS":       net.JoinHostPort(o.host, "443"),
		"SWITCHBOARD_TLS_CERT":    cert,
		"SWITCHBOARD_TLS_KEY":     key,
		"SWITCHBOARD_ADMIN_TOKEN": adminToken,
		"SWITCHBOARD_TURN_URLS":   fmt.Sprintf("turn:%s:3478?transport=udp,turns:%s:443?transport=tcp", turnName, turnName),
		"SWITCHBOARD_TURN_SECRET": turnSecret,
	} {
		o.env[k] = v
	}
	s := &site{name: name, domain: domain, public: public, g: startGateway(t, o)}
	s.admin = &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
			// The test has no DNS: the domain is the public address.
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, net.JoinHostPort(public, "443"))
			},
		},
	}
	return s
}

// adminGet GETs path of the site's admin API over HTTPS into out.
func (s *site) adminGet(t *testing.T, path string, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+s.domain+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := s.admin.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s (%v)", path, res.StatusCode, body, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// checkBindings: the gateway saw alice and the phone at their NATs'
// public addresses, alice over WSS.
func (s *site) checkBindings(t *testing.T) {
	t.Helper()
	var out struct {
		Registrations []struct{ AOR, Source, Transport, Contact string }
	}
	s.adminGet(t, "/admin/registrations", &out)
	got := map[string]string{}
	for _, r := range out.Registrations {
		ap, err := netip.ParseAddrPort(r.Source)
		if err != nil {
			t.Fatalf("registration %+v: %v", r, err)
		}
		got[r.AOR] = r.Transport + " from " + ap.Addr().String()
	}
	want := map[string]string{
		"sip:alice@" + s.domain: "wss from " + officeWAN,
		"sip:1000@" + s.domain:  "udp from " + homeWAN,
	}
	for aor, w := range want {
		if got[aor] != w {
			t.Errorf("the binding of %s: %q, want %q (all: %+v)", aor, got[aor], w, out.Registrations)
		}
	}
}

// registerDeskPhone registers the desk phone (1000) from its SIP port, which
// also opens the home NAT's mapping for the gateway's requests. A phone
// behind NAT re-registers often for that; the test does before each call
// the phone takes.
func registerDeskPhone(t *testing.T, s *site, w *simInternet) {
	t.Helper()
	code := runSipp(t, s.g, "register-1000", "register-only.xml", sippOptions{
		in: w.phone, ip: phoneIP, port: phoneSIPPort, remote: net.JoinHostPort(s.public, "5060"),
		inf: s.domain, service: "1000", user: "1000", password: users["1000"],
	})
	if code != 0 {
		t.Fatalf("the phone's REGISTER with %s: sipp exited %d", s.domain, code)
	}
}

// phoneMedia are sipp's arguments for the phone's audio: its pcap comes
// from its RTP port, which the home router's counter watches.
func phoneMedia(tone []byte) ([]string, map[string][]byte) {
	return []string{"-mi", phoneIP, "-mp", fmt.Sprint(phoneRTPPort)}, map[string][]byte{"pcmu.pcap": tone}
}

func softphoneCallsPhone(t *testing.T, s *site, w *simInternet, p *page, path officePath, tone []byte) {
	registerDeskPhone(t, s, w)
	args, files := phoneMedia(tone)
	phone := startSipp(t, s.g, "phone-answers", "phone-answer.xml", sippOptions{
		in: w.phone, ip: phoneIP, port: phoneSIPPort, remote: net.JoinHostPort(s.public, "5060"),
		args: args, files: files,
	})
	phone.waitBound(false, phoneIP, phoneSIPPort)
	before := w.toPhone.Packets()
	var ok bool
	p.eval(t, "window.softphone.call('1000')", &ok)
	if !ok {
		t.Fatal("the softphone did not place the call")
	}
	talk(t, s, w, p, path, before)
	// phone-answer.xml ends well only after the BYE.
	phone.expectSuccess()
}

func phoneCallsSoftphone(t *testing.T, s *site, w *simInternet, p *page, path officePath, tone []byte) {
	args, files := phoneMedia(tone)
	before := w.toPhone.Packets()
	phone := startSipp(t, s.g, "phone-calls", "phone-call.xml", sippOptions{
		in: w.phone, ip: phoneIP, port: phoneSIPPort, remote: net.JoinHostPort(s.public, "5060"),
		inf:     s.domain + ";1000;" + s.domain,
		service: "alice", user: "1000", password: users["1000"], authURI: "alice@" + s.domain,
		args: args, files: files,
	})
	talk(t, s, w, p, path, before)
	phone.expectSuccess()
}

// pageStats is what the softphone's getStats says of a call.
type pageStats struct {
	ConnectionState string `json:"connectionState"`
	Codec           string `json:"codec"`
	Inbound         struct {
		PacketsReceived uint64  `json:"packetsReceived"`
		BytesReceived   uint64  `json:"bytesReceived"`
		AudioLevel      float64 `json:"audioLevel"`
	} `json:"inbound"`
	Outbound struct {
		PacketsSent uint64 `json:"packetsSent"`
		BytesSent   uint64 `json:"bytesSent"`
	} `json:"outbound"`
}

// talk checks a call between the page and the phone once it is placed:
// it comes up, carries audio both ways on the path expected, and the
// browser hangs up.
func talk(t *testing.T, s *site, w *simInternet, p *page, path officePath, toPhoneBefore uint64) {
	t.Helper()
	type state struct{ Call, Peer string }
	t.Cleanup(func() {
		if t.Failed() {
			var ice pageICE
			_ = p.c.do(map[string]any{"op": "ice", "page": p.name}, &ice)
			b, _ := json.MarshalIndent(ice, "", "  ")
			t.Logf("--- the page's ICE ---\n%s", b)
		}
		// A call left up by a failure must not make the next one busy.
		var st state
		if err := p.c.do(map[string]any{"op": "eval", "page": p.name, "expr": "window.softphone.state"}, &st); err == nil && st.Call != "idle" {
			_ = p.c.do(map[string]any{"op": "eval", "page": p.name, "expr": "window.softphone.hangup()"}, nil)
		}
	})
	waitFor(t, p, "the call to be active", "window.softphone.state", callWait, func(st state) bool {
		return st.Call == "active" && st.Peer == "1000"
	})
	// Phone → browser: the tone, decoded as sound. Browser → phone: the
	// fake microphone's packets leave the browser.
	stats := waitFor(t, p, "audio both ways in the browser", "window.softphone.getStats()", callWait, func(st pageStats) bool {
		return st.ConnectionState == "connected" &&
			st.Inbound.PacketsReceived >= audioPackets && st.Inbound.AudioLevel > 0.01 && st.Outbound.PacketsSent >= audioPackets
	})
	if !strings.EqualFold(stats.Codec, "audio/PCMU") {
		t.Errorf("the browser receives %s, want PCMU (the phone's only codec)", stats.Codec)
	}
	c := s.waitCall(t, path)
	if rtp := c.Media.RTP; !rtp.Latched || !strings.HasPrefix(rtp.Remote, homeWAN+":") {
		t.Errorf("the RTP leg sends to %s (latched %v), want the home NAT's address %s", rtp.Remote, rtp.Latched, homeWAN)
	}
	// The browser's audio crossed the home NAT to the phone's RTP port.
	if n := w.toPhone.Packets() - toPhoneBefore; n < audioPackets {
		t.Errorf("%d RTP packets reached the phone, want at least %d", n, audioPackets)
	}
	var ok bool
	p.eval(t, "window.softphone.hangup()", &ok)
	waitFor(t, p, "the call to end", "window.softphone.state", callWait, func(st state) bool { return st.Call == "idle" })
}

type adminLeg struct {
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
	Remote     string
	Latched    bool
	Transport  *legTransport
	FastPath   bool `json:"fast_path"`
}

// legTransport is how the web leg's media goes (media.Transport).
type legTransport struct {
	Local, Remote candidate
	DTLSRole      string `json:"dtls_role"`
	SRTPProfile   string `json:"srtp_profile"`
	// Checks are the gateway's candidate pairs when the leg connected.
	Checks []media.PairCheck
}

type candidate struct{ Type, Protocol, Address string }

// expect checks the gateway's candidate, and that the browser's is of one
// of types over protocol from an address of ip.
func (tr *legTransport) expect(local candidate, types []string, protocol, ip string) error {
	remoteIP, _, err := net.SplitHostPort(tr.Remote.Address)
	switch {
	case tr.Local != local:
		return fmt.Errorf("the gateway's candidate is %+v, want %+v", tr.Local, local)
	case err != nil:
		return fmt.Errorf("the browser's candidate %+v: %v", tr.Remote, err)
	case !contains(types, tr.Remote.Type) || tr.Remote.Protocol != protocol || remoteIP != ip:
		return fmt.Errorf("the browser's candidate is %+v, want %s %v from %s", tr.Remote, protocol, types, ip)
	case tr.SRTPProfile == "" || tr.DTLSRole == "":
		return fmt.Errorf("no DTLS role or SRTP profile: %+v", tr)
	}
	return nil
}

// checks is the gateway's candidate pairs, on one line.
func (tr *legTransport) checks() string {
	lines := make([]string, len(tr.Checks))
	for i, c := range tr.Checks {
		lines[i] = c.String()
	}
	return strings.Join(lines, " | ")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// waitCall waits until the admin API shows the one call answered, with
// audio both ways on both legs, its web leg on the path expected.
func (s *site) waitCall(t *testing.T, path officePath) adminCall {
	t.Helper()
	ice := net.JoinHostPort(s.public, "10000")
	deadline := time.Now().Add(callWait)
	for {
		var out struct{ Calls []adminCall }
		s.adminGet(t, "/admin/calls", &out)
		why := fmt.Sprintf("%d calls", len(out.Calls))
		if len(out.Calls) == 1 {
			c := out.Calls[0]
			m := c.Media
			switch {
			case c.State != "answered":
				why = "state " + c.State
			case m.Web.PacketsIn < audioPackets || m.Web.PacketsOut < audioPackets || m.RTP.PacketsIn < audioPackets || m.RTP.PacketsOut < audioPackets:
				why = fmt.Sprintf("packets web in %d out %d, rtp in %d out %d", m.Web.PacketsIn, m.Web.PacketsOut, m.RTP.PacketsIn, m.RTP.PacketsOut)
			case m.Web.Transport == nil:
				why = "no transport yet"
			case m.Web.FastPath != path.fast:
				why = fmt.Sprintf("the web leg's fast_path is %v, want %v (the gateway's log says why a leg stays on pion's path)", m.Web.FastPath, path.fast)
			default:
				err := path.check(m.Web.Transport, ice)
				if err == nil {
					return c
				}
				// On one line with the error, which is what CI's
				// excerpt of a failure keeps: why ICE chose that pair.
				why = err.Error() + "; the gateway's candidate pairs: " + m.Web.Transport.checks()
			}
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(out, "", "  ")
			t.Fatalf("the admin API never showed the call talking over %s: %s\n%s", path.name, why, b)
		}
		time.Sleep(100 * time.Millisecond) // polling the API, with a deadline
	}
}
