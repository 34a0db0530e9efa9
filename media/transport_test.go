package media

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestPairChecksCap: a browser that offers many candidates makes many
// pairs; the transport keeps maxPairChecks of them, in an order that does
// not depend on the stats map's, each with its candidates resolved.
func TestPairChecksCap(t *testing.T) {
	stats := webrtc.StatsReport{
		"local": webrtc.ICECandidateStats{ID: "local", IP: "192.0.2.1", Port: 10000, Protocol: "udp", CandidateType: webrtc.ICECandidateTypeHost},
	}
	for i := range 2 * maxPairChecks {
		id := fmt.Sprintf("remote%02d", i)
		stats[id] = webrtc.ICECandidateStats{ID: id, IP: fmt.Sprintf("198.51.100.%d", i+1), Port: 5000, Protocol: "udp", CandidateType: webrtc.ICECandidateTypeSrflx}
		stats["pair"+id] = webrtc.ICECandidatePairStats{
			ID: "pair" + id, LocalCandidateID: "local", RemoteCandidateID: id,
			State: webrtc.StatsICECandidatePairStateFailed, RequestsSent: 7,
		}
	}
	// The last pair is the one that succeeded: the cap must keep it.
	last := fmt.Sprintf("pairremote%02d", 2*maxPairChecks-1)
	p := stats[last].(webrtc.ICECandidatePairStats)
	p.State, p.Nominated, p.ResponsesReceived = webrtc.StatsICECandidatePairStateSucceeded, true, 1
	stats[last] = p
	got := pairChecks(stats)
	if len(got) != maxPairChecks {
		t.Fatalf("%d checks of %d pairs, want the cap %d", len(got), 2*maxPairChecks, maxPairChecks)
	}
	if c := got[0]; !c.Nominated || c.Remote.Address != fmt.Sprintf("198.51.100.%d:5000", 2*maxPairChecks) {
		t.Errorf("first check %+v, want the nominated pair", c)
	}
	got = got[1:]
	for i, c := range got {
		if c.Local.Address != "192.0.2.1:10000" || c.Remote.Type != "srflx" || c.State != "failed" || c.RequestsSent != 7 {
			t.Errorf("check %d: %+v", i, c)
		}
		if i > 0 && got[i-1].Remote.Address > c.Remote.Address {
			t.Errorf("checks out of order: %s before %s", got[i-1].Remote.Address, c.Remote.Address)
		}
	}
	if s := got[0].String(); !strings.Contains(s, "host/udp 192.0.2.1:10000 -> srflx/udp") || !strings.Contains(s, "failed, 7 checks sent, 0 answered") {
		t.Errorf("String() = %q", s)
	}
}
