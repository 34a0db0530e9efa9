package media

import (
	"fmt"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// primeWait bounds how long applying a browser's answer waits for the ICE
// agent to hold the answer's candidates (primeCandidates). It takes
// microseconds on an idle machine; past the bound the answer is applied
// anyway, as pion alone would.
const primeWait = 200 * time.Millisecond

// maxPrimed bounds the candidates of one answer given to the agent ahead
// of it: a browser gathers a handful, a hostile answer may list many (pion
// takes the rest with the answer).
const maxPrimed = 32

// primeCandidates gives the ICE agent the candidates of the browser's
// answer before the answer itself, and waits (up to primeWait) until it
// holds them.
//
// pion adds an answer's candidates in goroutines of their own, after it has
// taken the browser's credentials. A check from the browser that the agent
// handles first makes its source a peer-reflexive candidate, with the
// priority of the check's PRIORITY attribute, and the answer's candidate
// of that address then takes its place in the pair and keeps that priority
// (pion's reading of RFC 8838 §11.4). Chromium's checks from its TURN relay
// carry a higher PRIORITY than those from its host candidate: a gateway
// that offered (a phone calling a browser), and so controls ICE, then
// nominates the relay pair once a relay may be nominated, 2 s in, over the
// direct pair that succeeded long before, and the call's media goes
// through the TURN server for good although the browser's network lets
// UDP out. CI saw it on a loaded machine, where those goroutines run late.
// The agent holding the answer's candidates before it knows the browser's
// credentials (which it needs to take a check), a check finds its
// candidate, with the priority the browser gave it.
func (b *Bridge) primeCandidates(answer []byte) {
	var s sdp.SessionDescription
	if s.UnmarshalString(string(answer)) != nil {
		return // SetRemoteDescription says what is wrong with it
	}
	tr := b.pc.SCTP().Transport().ICETransport()
	want := map[string]bool{}
	for _, m := range s.MediaDescriptions {
		for _, a := range m.Attributes {
			if a.Key != "candidate" || len(want) == maxPrimed {
				continue
			}
			c, err := ice.UnmarshalCandidate(a.Value)
			if err != nil || c.TCPType() == ice.TCPTypeActive || strings.HasSuffix(c.Address(), ".local") {
				// Broken ones are the answer's to refuse; pion
				// ignores active TCP candidates and resolves mDNS
				// names on its own.
				continue
			}
			key := candidateKey(c.NetworkType().NetworkShort(), c.Address(), c.Port())
			if want[key] {
				continue
			}
			ic := iceCandidateOf(c)
			if tr.AddRemoteCandidate(&ic) == nil {
				want[key] = true
			}
		}
	}
	if len(want) == 0 {
		return
	}
	deadline := time.Now().Add(primeWait)
	for !agentHolds(b.pc.GetStats(), want) && time.Now().Before(deadline) {
		// pion offers no signal for a candidate taken: its goroutines
		// take microseconds, a busy machine a few milliseconds.
		time.Sleep(time.Millisecond)
	}
}

// agentHolds reports whether the remote candidates of stats include every
// one of want.
func agentHolds(stats webrtc.StatsReport, want map[string]bool) bool {
	n := 0
	for _, s := range stats {
		if c, ok := s.(webrtc.ICECandidateStats); ok && c.Type == webrtc.StatsTypeRemoteCandidate &&
			want[candidateKey(c.Protocol, c.IP, int(c.Port))] {
			n++
		}
	}
	return n >= len(want)
}

func candidateKey(protocol, addr string, port int) string {
	return fmt.Sprintf("%s %s %d", strings.ToLower(protocol), addr, port)
}

// iceCandidateOf is c as webrtc's ICECandidate, which is what its
// ICETransport takes.
func iceCandidateOf(c ice.Candidate) webrtc.ICECandidate {
	ic := webrtc.ICECandidate{
		Foundation: c.Foundation(),
		Priority:   c.Priority(),
		Address:    c.Address(),
		Port:       uint16(c.Port()),
		Component:  c.Component(),
		TCPType:    c.TCPType().String(),
	}
	ic.Protocol, _ = webrtc.NewICEProtocol(c.NetworkType().NetworkShort())
	ic.Typ, _ = webrtc.NewICECandidateType(c.Type().String())
	if r := c.RelatedAddress(); r != nil {
		ic.RelatedAddress, ic.RelatedPort = r.Address, uint16(r.Port)
	}
	return ic
}
