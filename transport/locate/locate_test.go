package locate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// zone is a fake DNS: records by name, failures by name, and the log of
// queries made.
type zone struct {
	naptr map[string][]NAPTR
	srv   map[string][]*net.SRV
	ip    map[string][]string
	fail  map[string]error

	mu      sync.Mutex
	queries []string
}

func (z *zone) log(q string) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.queries = append(z.queries, q)
	return z.fail[q]
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (z *zone) LookupNAPTR(_ context.Context, name string) ([]NAPTR, error) {
	if err := z.log("NAPTR " + name); err != nil {
		return nil, err
	}
	if r, ok := z.naptr[name]; ok {
		return r, nil
	}
	return nil, notFound(name)
}

func (z *zone) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	if service != "" || proto != "" {
		return "", nil, errors.New("fake: expected a full srv name")
	}
	if err := z.log("SRV " + name); err != nil {
		return "", nil, err
	}
	if r, ok := z.srv[name]; ok {
		return name, r, nil
	}
	return "", nil, notFound(name)
}

func (z *zone) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if err := z.log("A " + host); err != nil {
		return nil, err
	}
	r, ok := z.ip[host]
	if !ok {
		return nil, notFound(host)
	}
	var out []net.IPAddr
	for _, s := range r {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

func (z *zone) asked() string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return strings.Join(z.queries, ", ")
}

func newZone() *zone {
	return &zone{
		naptr: map[string][]NAPTR{
			"naptr.example.com": {
				{Order: 50, Preference: 50, Flags: "s", Service: "SIP+D2U", Replacement: "_sip._udp.naptr.example.com."},
				{Order: 10, Preference: 60, Flags: "s", Service: "SIP+D2T", Replacement: "_sip._tcp.naptr.example.com."},
				{Order: 10, Preference: 50, Flags: "s", Service: "SIPS+D2T", Replacement: "_sips._tcp.naptr.example.com."},
				{Order: 5, Preference: 5, Flags: "s", Service: "SIP+D2S", Replacement: "_sip._sctp.naptr.example.com."},
				{Order: 1, Preference: 1, Flags: "u", Service: "E2U+sip", Regexp: "!^.*$!sip:x@y!"},
			},
		},
		srv: map[string][]*net.SRV{
			"_sip._udp.naptr.example.com":  {{Target: "udp.naptr.example.com.", Port: 5060, Priority: 1}},
			"_sip._tcp.naptr.example.com":  {{Target: "tcp.naptr.example.com.", Port: 5060, Priority: 1}},
			"_sips._tcp.naptr.example.com": {{Target: "tls.naptr.example.com.", Port: 5061, Priority: 1}},
			"_sip._sctp.naptr.example.com": {{Target: "sctp.naptr.example.com.", Port: 5060, Priority: 1}},
			"_sip._tcp.srv.example.com": {
				{Target: "b.srv.example.com.", Port: 5070, Priority: 20},
				{Target: "a.srv.example.com.", Port: 5060, Priority: 10},
			},
			"_sip._udp.srv.example.com":  {{Target: "a.srv.example.com.", Port: 5060, Priority: 10}},
			"_sips._tcp.srv.example.com": {{Target: "a.srv.example.com.", Port: 5061, Priority: 10}},
			"_sip._udp.down.example.com": {{Target: ".", Port: 0}},
		},
		ip: map[string][]string{
			"udp.naptr.example.com": {"192.0.2.1"},
			"tcp.naptr.example.com": {"192.0.2.2"},
			"tls.naptr.example.com": {"192.0.2.3", "2001:db8::3"},
			"a.srv.example.com":     {"192.0.2.10"},
			"b.srv.example.com":     {"192.0.2.20"},
			"a.example.com":         {"192.0.2.30", "2001:db8::30"},
			"down.example.com":      {"192.0.2.40"},
		},
	}
}

func locateURI(t *testing.T, l *Locator, uri string) (string, error) {
	t.Helper()
	u, err := sip.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := l.Resolve(context.Background(), u)
	return fmt.Sprint(addrs), err
}

func TestLocate(t *testing.T) {
	for _, tc := range []struct {
		uri, want, asked string
	}{
		{"sip:bob@naptr.example.com",
			// Order 10 before 50; within order 10, preference 50 before 60.
			// SCTP is not supported and the "u" record is not for us.
			"[TLS 192.0.2.3:5061 TLS [2001:db8::3]:5061 TCP 192.0.2.2:5060 UDP 192.0.2.1:5060]",
			"NAPTR naptr.example.com, SRV _sips._tcp.naptr.example.com, A tls.naptr.example.com, " +
				"SRV _sip._tcp.naptr.example.com, A tcp.naptr.example.com, SRV _sip._udp.naptr.example.com, A udp.naptr.example.com"},
		{"sips:bob@naptr.example.com",
			"[TLS 192.0.2.3:5061 TLS [2001:db8::3]:5061]",
			"NAPTR naptr.example.com, SRV _sips._tcp.naptr.example.com, A tls.naptr.example.com"},
		{"sip:bob@srv.example.com",
			"[UDP 192.0.2.10:5060 TCP 192.0.2.10:5060 TCP 192.0.2.20:5070 TLS 192.0.2.10:5061]",
			"NAPTR srv.example.com, SRV _sip._udp.srv.example.com, A a.srv.example.com, SRV _sip._tcp.srv.example.com, " +
				"A a.srv.example.com, A b.srv.example.com, SRV _sips._tcp.srv.example.com, A a.srv.example.com"},
		{"sip:bob@srv.example.com;transport=tcp",
			"[TCP 192.0.2.10:5060 TCP 192.0.2.20:5070]",
			"SRV _sip._tcp.srv.example.com, A a.srv.example.com, A b.srv.example.com"},
		{"sips:bob@srv.example.com;transport=tcp",
			"[TLS 192.0.2.10:5061]",
			"SRV _sips._tcp.srv.example.com, A a.srv.example.com"},
		{"sip:bob@a.example.com",
			"[UDP 192.0.2.30:5060 UDP [2001:db8::30]:5060]",
			"NAPTR a.example.com, SRV _sip._udp.a.example.com, SRV _sip._tcp.a.example.com, SRV _sips._tcp.a.example.com, A a.example.com"},
		{"sips:bob@a.example.com",
			"[TLS 192.0.2.30:5061 TLS [2001:db8::30]:5061]",
			"NAPTR a.example.com, SRV _sips._tcp.a.example.com, A a.example.com"},
		{"sip:bob@srv.example.com:5080",
			"", "A srv.example.com"},
		{"sip:bob@a.example.com:5080;transport=tcp",
			"[TCP 192.0.2.30:5080 TCP [2001:db8::30]:5080]", "A a.example.com"},
		{"sip:bob@192.0.2.99", "[UDP 192.0.2.99:5060]", ""},
		{"sip:bob@[2001:db8::99]:5070;transport=tcp", "[TCP [2001:db8::99]:5070]", ""},
		{"sips:bob@192.0.2.99", "[TLS 192.0.2.99:5061]", ""},
		{"sip:bob@srv.example.com;maddr=192.0.2.77", "[UDP 192.0.2.77:5060]", ""},
		{"sip:bob@down.example.com;transport=udp", "[UDP 192.0.2.40:5060]",
			"SRV _sip._udp.down.example.com, A down.example.com"},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			z := newZone()
			got, err := locateURI(t, &Locator{DNS: z}, tc.uri)
			if tc.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("got %s, %v; want ErrNotFound", got, err)
				}
			} else if err != nil || got != tc.want {
				t.Errorf("got  %s, %v\nwant %s", got, err, tc.want)
			}
			if a := z.asked(); a != tc.asked {
				t.Errorf("asked %s\nwant  %s", a, tc.asked)
			}
		})
	}
}

func TestLocateErrors(t *testing.T) {
	z := newZone()
	l := &Locator{DNS: z}
	for _, uri := range []string{"sips:bob@a.example.com;transport=udp", "sip:bob@a.example.com;transport=sctp", "tel:+15551234"} {
		if _, err := locateURI(t, l, uri); !errors.Is(err, ErrUnsupportedTransport) {
			t.Errorf("%s: %v", uri, err)
		}
	}
	onlyTCP := &Locator{DNS: z, Transports: []string{sip.TCP}}
	if got, err := locateURI(t, onlyTCP, "sip:bob@naptr.example.com"); err != nil || got != "[TCP 192.0.2.2:5060]" {
		t.Errorf("tcp only: %s, %v", got, err)
	}
	if _, err := locateURI(t, onlyTCP, "sip:bob@a.example.com;transport=udp"); !errors.Is(err, ErrUnsupportedTransport) {
		t.Errorf("udp when only tcp: %v", err)
	}
	// A DNS failure is reported when nothing is found.
	timeout := &net.DNSError{Err: "i/o timeout", Name: "x", IsTimeout: true}
	z.fail = map[string]error{"SRV _sip._udp.nothing.example.com": timeout}
	_, err := locateURI(t, l, "sip:bob@nothing.example.com")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsTimeout {
		t.Errorf("dns failure lost: %v", err)
	}
	// But found records win over a failed query.
	z.fail = map[string]error{"NAPTR srv.example.com": timeout}
	if got, err := locateURI(t, l, "sip:bob@srv.example.com;transport=udp"); err != nil || got != "[UDP 192.0.2.10:5060]" {
		t.Errorf("%s, %v", got, err)
	}
}

// seq returns a Rand that gives vals in turn.
func seq(vals ...int) func(int) int {
	return func(n int) int {
		v := vals[0]
		vals = vals[1:]
		if v >= n {
			panic(fmt.Sprintf("rand %d out of [0,%d)", v, n))
		}
		return v
	}
}

func targets(recs []*net.SRV) string {
	var s []string
	for _, r := range recs {
		s = append(s, r.Target)
	}
	return strings.Join(s, " ")
}

func TestOrderSRV(t *testing.T) {
	recs := []*net.SRV{
		{Target: "c", Priority: 20, Weight: 10},
		{Target: "a1", Priority: 10, Weight: 60},
		{Target: "a0", Priority: 10, Weight: 0},
		{Target: "a2", Priority: 10, Weight: 40},
	}
	for _, tc := range []struct {
		draws []int
		want  string
	}{
		// Priority 10 sorted a0 (weight 0 first), a1, a2: sums 0, 60, 100.
		{[]int{0, 0, 0, 0}, "a0 a1 a2 c"},     // 0 picks a0 (sum 0 >= 0)
		{[]int{61, 0, 0, 0}, "a2 a0 a1 c"},    // 61 > 60: a2; then a0, a1 (sums 0, 60)
		{[]int{1, 1, 0, 0}, "a1 a2 a0 c"},     // 1 picks a1; then [a0 a2] sums 0, 40: 1 picks a2
		{[]int{100, 60, 0, 10}, "a2 a1 a0 c"}, // c alone in its priority
	} {
		if got := targets(OrderSRV(recs, seq(tc.draws...))); got != tc.want {
			t.Errorf("draws %v: got %s, want %s", tc.draws, got, tc.want)
		}
	}
	if recs[0].Target != "c" {
		t.Error("input reordered")
	}
	// Proportions: with a real random source, weight 3:1 gives about 3:1.
	first := map[string]int{}
	l := &Locator{}
	two := []*net.SRV{{Target: "x", Weight: 3}, {Target: "y", Weight: 1}}
	for range 4000 {
		first[OrderSRV(two, l.intn)[0].Target]++
	}
	if first["x"] < 2700 || first["x"] > 3300 {
		t.Errorf("x first %d times of 4000, want about 3000", first["x"])
	}
}

func TestLocateUsesRand(t *testing.T) {
	z := newZone()
	z.srv["_sip._udp.w.example.com"] = []*net.SRV{
		{Target: "a.srv.example.com.", Port: 1, Weight: 1},
		{Target: "b.srv.example.com.", Port: 2, Weight: 1},
	}
	l := &Locator{DNS: z, Transports: []string{sip.UDP}, Rand: seq(2, 0)}
	got, err := locateURI(t, l, "sip:w.example.com")
	if err != nil || got != "[UDP 192.0.2.20:2 UDP 192.0.2.10:1]" {
		t.Errorf("%s, %v", got, err)
	}
}

func TestSentBy(t *testing.T) {
	z := newZone()
	l := &Locator{DNS: z}
	ctx := context.Background()
	for _, tc := range []struct {
		tr, host string
		port     int
		want     string
	}{
		{"UDP", "192.0.2.5", 0, "[UDP 192.0.2.5:5060]"},
		{"tls", "[2001:db8::5]", 0, "[TLS [2001:db8::5]:5061]"},
		{"UDP", "a.example.com", 5070, "[UDP 192.0.2.30:5070 UDP [2001:db8::30]:5070]"},
		{"TCP", "srv.example.com", 0, "[TCP 192.0.2.10:5060 TCP 192.0.2.20:5070]"},
		{"UDP", "a.example.com", 0, "[UDP 192.0.2.30:5060 UDP [2001:db8::30]:5060]"},
	} {
		addrs, err := l.SentBy(ctx, tc.tr, tc.host, tc.port)
		if got := fmt.Sprint(addrs); err != nil || got != tc.want {
			t.Errorf("%s %s:%d: got %s, %v; want %s", tc.tr, tc.host, tc.port, got, err, tc.want)
		}
	}
	if _, err := l.SentBy(ctx, "UDP", "nowhere.example.com", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("nowhere: %v", err)
	}
}

func TestFailover(t *testing.T) {
	z := newZone()
	list, err := (&Locator{DNS: z}).Resolve(context.Background(), sip.URI{Scheme: "sip", Host: "naptr.example.com"})
	if err != nil || len(list) != 4 {
		t.Fatalf("%v, %v", list, err)
	}
	var tried []string
	outcomes := map[string]struct {
		status int
		err    error
	}{
		"TLS 192.0.2.3:5061":       {0, errors.New("connection refused")},
		"TLS [2001:db8::3]:5061":   {503, nil},
		"TCP 192.0.2.2:5060":       {0, errors.New("timeout")},
		"UDP 192.0.2.1:5060":       {486, nil},
		"unused, as 486 is final.": {},
	}
	try := func(_ context.Context, dst sip.Addr) (int, error) {
		tried = append(tried, dst.String())
		o := outcomes[dst.String()]
		return o.status, o.err
	}
	dst, status, err := Failover(context.Background(), list, try)
	if err != nil || status != 486 || dst.String() != "UDP 192.0.2.1:5060" || len(tried) != 4 {
		t.Errorf("got %v %d %v after %v", dst, status, err, tried)
	}

	// Everything fails: the last outcome.
	outcomes["UDP 192.0.2.1:5060"] = struct {
		status int
		err    error
	}{503, nil}
	tried = nil
	dst, status, err = Failover(context.Background(), list, try)
	if err != nil || status != 503 || dst.String() != "UDP 192.0.2.1:5060" {
		t.Errorf("all failed: %v %d %v", dst, status, err)
	}

	// Cancelled: stops at once.
	ctx, cancel := context.WithCancel(context.Background())
	tried = nil
	_, _, err = Failover(ctx, list, func(ctx context.Context, dst sip.Addr) (int, error) {
		cancel()
		return try(ctx, dst)
	})
	if !errors.Is(err, context.Canceled) || len(tried) != 1 {
		t.Errorf("cancel: %v after %v", err, tried)
	}
	if _, _, err := Failover(context.Background(), nil, try); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty: %v", err)
	}

	w := NewTargets(list[:2])
	a, _ := w.Next()
	if a != list[0] || w.Remaining() != 1 {
		t.Errorf("targets walker: %v %d", a, w.Remaining())
	}
	w.Next()
	if _, ok := w.Next(); ok {
		t.Error("walker past the end")
	}
}
