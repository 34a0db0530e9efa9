package gateway

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/internal/sipnet"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport/locate"
	"github.com/switchboard/switchboard/transport/transporttest"
)

const (
	selfNode = "sip:127.0.0.1:5061;transport=tcp"
	liveNode = "sip:127.0.0.1:5062;transport=tcp"
	deadNode = "sip:127.0.0.1:5063;transport=tcp"
)

// fakeCluster knows which nodes are alive, as of lastBeat.
type fakeCluster struct {
	alive    []string
	lastBeat time.Time
}

func (fakeCluster) Node() string { return selfNode }
func (c fakeCluster) Alive(node string, at time.Time) bool {
	return node == selfNode || slices.Contains(c.alive, node) || at.After(c.lastBeat)
}

var clusterSecret = []byte("0123456789abcdef0123456789abcdef")

// clusterGateway is the part of a gateway of a cluster that looks targets
// up and bridges them: a location store, the cluster, and a proxy for the
// peer routes, on an in-memory network that carries nothing here.
func clusterGateway(t *testing.T, loc location.Store) *Gateway {
	t.Helper()
	net := sipnet.New()
	t.Cleanup(net.Close)
	n := net.AddNode("gw", sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("127.0.0.1:5061")})
	layer := transaction.New(context.Background(), n, transaction.HandlerFunc(func(context.Context, *transaction.ServerTx, *sip.Request) {}), transaction.Config{})
	t.Cleanup(func() { layer.Close() })
	id, err := identity.New(identity.Config{Domains: []string{"example.com"}, Endpoints: []identity.Endpoint{{Transport: sip.TCP, Host: "127.0.0.1", Port: 5061}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{Transactions: layer, Sender: n, Identity: id, Secret: clusterSecret})
	if err != nil {
		t.Fatal(err)
	}
	return &Gateway{
		cfg:   Config{Location: loc, Cluster: fakeCluster{alive: []string{liveNode}, lastBeat: time.Now().Add(time.Hour)}},
		node:  selfNode,
		proxy: p,
		dns:   &locate.Locator{DNS: noDNS{}},
		log:   slog.New(slog.DiscardHandler),
	}
}

// TestLocatorRoutesThroughTheHolder: the targets of a user with bindings
// on three instances: a connection here is used directly, one on a live
// instance is reached through it on a peer route that names the
// connection, one on a dead instance is skipped — unless its contact is
// reachable from anywhere.
func TestLocatorRoutesThroughTheHolder(t *testing.T) {
	now := time.Now()
	loc, err := location.Open(location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer loc.Close()
	g := clusterGateway(t, loc)
	ws := func(port uint16, flow uint64) sip.Addr {
		return sip.Addr{Transport: sip.WS, AddrPort: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), port), Flow: flow}
	}
	put := func(contact, node string, src sip.Addr) {
		a, err := sip.ParseAddress(contact)
		if err != nil {
			t.Fatal(err)
		}
		b := location.Binding{AOR: "sip:alice@example.com", Contact: a, Expires: now.Add(time.Hour), Q: 1000,
			CallID: contact, CSeq: 1, Received: now, Node: node, Source: src}
		if err := loc.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	put("<sip:a@here.invalid;transport=ws>", selfNode, ws(40001, 1))
	put("<sip:a@there.invalid;transport=ws>", liveNode, ws(40002, 1))
	put("<sip:a@gone.invalid;transport=ws>", deadNode, ws(40003, 1))
	put("<sip:a@203.0.113.9:5060>", deadNode, sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("203.0.113.9:5060")})
	put("<sip:a@192.168.1.9:5060>", liveNode, sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("203.0.113.10:40000")})

	ts, err := locator{g}.Lookup(context.Background(), "sip:alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	byHost := map[string]proxy.Target{}
	for _, tg := range ts {
		byHost[tg.URI.Host] = tg
	}
	if len(ts) != 4 {
		t.Fatalf("%d targets, want 4: %v", len(ts), byHost)
	}
	if tg := byHost["here.invalid"]; tg.Dest != ws(40001, 1) || tg.Peer || len(tg.Path) != 0 {
		t.Errorf("a connection of this instance: %+v", tg)
	}
	if _, ok := byHost["gone.invalid"]; ok {
		t.Error("a connection of a dead instance is a target")
	}
	if tg := byHost["203.0.113.9"]; tg.Dest.IsValid() || tg.Peer {
		t.Errorf("a public contact registered at a dead instance: %+v", tg)
	}
	for host, src := range map[string]sip.Addr{
		"there.invalid": ws(40002, 1),
		"192.168.1.9":   {Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("203.0.113.10:40000")},
	} {
		tg := byHost[host]
		if !tg.Peer || tg.Dest.IsValid() || len(tg.Path) != 1 {
			t.Errorf("%s, held by a live instance: %+v", host, tg)
			continue
		}
		if want := g.proxy.PeerRoute(sip.URI{Scheme: "sip", Host: "127.0.0.1", Port: 5062, Params: ";transport=tcp"}, src, now.Add(time.Hour)); tg.Path[0] != want {
			t.Errorf("%s: route %s, want %s", host, tg.Path[0], want)
		}
		if !strings.HasPrefix(tg.Path[0], "<sip:") || !strings.Contains(tg.Path[0], "@127.0.0.1:5062;transport=tcp;lr;sbpeer=") {
			t.Errorf("%s: route %s does not name the live instance", host, tg.Path[0])
		}
	}
}

// TestBridgeInCluster: the instance that holds the browser's connection
// bridges: a phone's call to a browser on another instance is left to the
// proxy, a browser's call to a phone on another instance is bridged here.
func TestBridgeInCluster(t *testing.T) {
	loc, err := location.Open(location.Options{Clock: clock.NewFake(time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	defer loc.Close()
	g := clusterGateway(t, loc)
	until := time.Now().Add(time.Hour)
	route := g.proxy.PeerRoute(sip.URI{Scheme: "sip", Host: "127.0.0.1", Port: 5062, Params: ";transport=tcp"},
		sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("203.0.113.10:40000"), Flow: 4}, until)

	phoneReq := transporttest.ParseRequest(t, "INVITE sip:alice@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcl1\r\n"+
		"From: <sip:1000@example.com>;tag=a\r\nTo: <sip:alice@example.com>\r\n"+
		"Call-ID: cl1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	browserThere := proxy.Target{URI: sip.URI{Scheme: "sip", User: "alice", Host: "there.invalid", Params: ";transport=ws"}, Path: []string{route}, Peer: true}
	if br, ok := g.bridge(context.Background(), phoneReq, proxy.Caller{}, browserThere); ok || br != nil {
		t.Error("a phone's call to a browser on another instance was bridged here")
	}

	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 AA:BB\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n"
	browserReq := transporttest.ParseRequest(t, "INVITE sip:1000@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/WS a.invalid;branch=z9hG4bKcl2\r\n"+
		"From: <sip:alice@example.com>;tag=b\r\nTo: <sip:1000@example.com>\r\n"+
		"Call-ID: cl2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"+
		"Content-Length: "+strconv.Itoa(len(sdp))+"\r\n\r\n"+sdp)
	phoneThere := proxy.Target{URI: sip.URI{Scheme: "sip", User: "1000", Host: "192.168.1.9", Port: 5060}, Path: []string{route}, Peer: true}
	br, ok := g.bridge(context.Background(), browserReq, proxy.Caller{User: "alice"}, phoneThere)
	if !ok {
		t.Fatal("a browser's call to a phone on another instance was not bridged here")
	}
	// No media engine in this test: the branch ends with 488, after the
	// peer route resolved as its next hop.
	if res := <-br.Responses(); res.StatusCode != 488 {
		t.Errorf("bridged branch: %d, want 488 (no media relay here)", res.StatusCode)
	}
}
