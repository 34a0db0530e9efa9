package media

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Transport is how the media of a web leg travels, as the gateway sees it
// once ICE and DTLS are up: the selected candidate pair, the gateway's
// DTLS role and the SRTP protection profile. It tells an operator whether
// a browser reached the gateway directly, through its NAT (srflx, prflx),
// through a TURN server (relay), over UDP or over TCP.
type Transport struct {
	// Local is the gateway's candidate of the selected pair, Remote the
	// browser's.
	Local  Candidate `json:"local"`
	Remote Candidate `json:"remote"`
	// DTLSRole is the gateway's role in the DTLS handshake: "client" or
	// "server".
	DTLSRole string `json:"dtls_role"`
	// SRTPProfile is the protection profile DTLS negotiated, as the IANA
	// registry names it (e.g. SRTP_AES128_CM_SHA1_80,
	// SRTP_AEAD_AES_128_GCM).
	SRTPProfile string `json:"srtp_profile"`
	// Checks are the candidate pairs ICE had checked when the leg
	// connected, at most maxPairChecks: why it chose the pair it did (a
	// browser's direct path that failed its checks and left the TURN
	// relay, say).
	Checks []PairCheck `json:"checks,omitempty"`
}

// PairCheck is one candidate pair of a web leg and its connectivity
// checks, as ICE counted them (RFC 8445 §6.1.2.6 states).
type PairCheck struct {
	Local  Candidate `json:"local"`
	Remote Candidate `json:"remote"`
	// State is waiting, in-progress, succeeded or failed.
	State     string `json:"state"`
	Nominated bool   `json:"nominated,omitempty"`
	// RequestsSent and ResponsesReceived are the gateway's checks and
	// their answers; RequestsReceived the browser's.
	RequestsSent      uint64 `json:"requests_sent"`
	ResponsesReceived uint64 `json:"responses_received"`
	RequestsReceived  uint64 `json:"requests_received"`
}

// String is the pair in a line: local -> remote, state and counts.
func (c PairCheck) String() string {
	n := ""
	if c.Nominated {
		n = " nominated"
	}
	return fmt.Sprintf("%s/%s %s -> %s/%s %s: %s%s, %d checks sent, %d answered, %d received",
		c.Local.Type, c.Local.Protocol, c.Local.Address, c.Remote.Type, c.Remote.Protocol, c.Remote.Address,
		c.State, n, c.RequestsSent, c.ResponsesReceived, c.RequestsReceived)
}

// maxPairChecks bounds Transport.Checks: a browser offers a handful of
// candidates, a hostile one may offer many.
const maxPairChecks = 16

// pairChecks reads the candidate pairs out of a PeerConnection's stats.
func pairChecks(stats webrtc.StatsReport) []PairCheck {
	cands := map[string]Candidate{}
	for _, s := range stats {
		if c, ok := s.(webrtc.ICECandidateStats); ok {
			cands[c.ID] = Candidate{
				Type:     c.CandidateType.String(),
				Protocol: c.Protocol,
				Address:  net.JoinHostPort(c.IP, strconv.Itoa(int(c.Port))),
			}
		}
	}
	var out []PairCheck
	for _, s := range stats {
		if p, ok := s.(webrtc.ICECandidatePairStats); ok {
			out = append(out, PairCheck{
				Local: cands[p.LocalCandidateID], Remote: cands[p.RemoteCandidateID],
				State: string(p.State), Nominated: p.Nominated,
				RequestsSent: p.RequestsSent, ResponsesReceived: p.ResponsesReceived, RequestsReceived: p.RequestsReceived,
			})
		}
	}
	// The stats are a map: the pairs in an order that reads the same
	// every time, the nominated and the succeeded first, which the cap
	// keeps.
	rank := func(c PairCheck) int {
		switch {
		case c.Nominated:
			return 0
		case c.State == string(webrtc.StatsICECandidatePairStateSucceeded):
			return 1
		}
		return 2
	}
	slices.SortFunc(out, func(a, b PairCheck) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.Local.Address, b.Local.Address),
			cmp.Compare(a.Remote.Address, b.Remote.Address), cmp.Compare(a.Local.Protocol, b.Local.Protocol))
	})
	return out[:min(len(out), maxPairChecks)]
}

// Candidate is one end of an ICE candidate pair.
type Candidate struct {
	// Type is host, srflx, prflx or relay (RFC 8445 §5.1.1).
	Type string `json:"type"`
	// Protocol is udp or tcp.
	Protocol string `json:"protocol"`
	// Address is the candidate's transport address, ip:port.
	Address string `json:"address"`
}

// TransportKey is what /metrics counts web legs by: the candidate types
// and protocols of the selected pair.
type TransportKey struct {
	LocalType, LocalProtocol   string
	RemoteType, RemoteProtocol string
}

// Key returns t's TransportKey.
func (t *Transport) Key() TransportKey {
	return TransportKey{t.Local.Type, t.Local.Protocol, t.Remote.Type, t.Remote.Protocol}
}

func candidateOf(c *webrtc.ICECandidate) Candidate {
	if c == nil {
		return Candidate{}
	}
	return Candidate{
		Type:     c.Typ.String(),
		Protocol: c.Protocol.String(),
		Address:  net.JoinHostPort(c.Address, strconv.Itoa(int(c.Port))),
	}
}

// transportFacts keeps a web leg's Transport: filled when the leg
// connects, its pair updated when ICE selects another.
type transportFacts struct {
	mu      sync.Mutex
	t       *Transport
	counted bool
}

func (f *transportFacts) get() *Transport {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.t == nil {
		return nil
	}
	t := *f.t
	t.Checks = slices.Clone(t.Checks)
	return &t
}

// learn reads the facts of pc, which has just connected, and reports
// them the first time for the engine's counts.
func (f *transportFacts) learn(pc *webrtc.PeerConnection) (t Transport, first bool) {
	dtls := pc.SCTP().Transport()
	if pair, err := dtls.ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
		t.Local, t.Remote = candidateOf(pair.Local), candidateOf(pair.Remote)
	}
	t.DTLSRole = dtlsRole(pc)
	// The caller holds pcCloseMu, and pion never closes pc by itself
	// (DisableCloseByDTLS): no close runs while GetStats reads.
	stats := pc.GetStats()
	for _, s := range stats {
		if ts, ok := s.(webrtc.TransportStats); ok && ts.SRTPCipher != "" {
			t.SRTPProfile = ts.SRTPCipher
		}
	}
	t.Checks = pairChecks(stats)
	f.mu.Lock()
	defer f.mu.Unlock()
	// A copy: the result t is read by the caller after the unlock, and
	// pairChanged writes through f.t.
	kept := t
	f.t = &kept
	first = !f.counted && t.Local.Type != ""
	f.counted = f.counted || first
	return t, first
}

// pairChanged records the pair ICE selected after the leg connected.
func (f *transportFacts) pairChanged(p *webrtc.ICECandidatePair) {
	if p == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.t != nil {
		f.t.Local, f.t.Remote = candidateOf(p.Local), candidateOf(p.Remote)
	}
}

// dtlsRole is the gateway's DTLS role, from the a=setup attributes of the
// negotiated descriptions (RFC 5763 §5): pion keeps its own to itself. An
// answer says active (client) or passive (server); after an actpass offer
// the browser's answer decides.
func dtlsRole(pc *webrtc.PeerConnection) string {
	local, remote := pc.CurrentLocalDescription(), pc.CurrentRemoteDescription()
	if local == nil || remote == nil {
		return ""
	}
	switch setup(local.SDP) {
	case "active":
		return "client"
	case "passive":
		return "server"
	}
	switch setup(remote.SDP) {
	case "active":
		return "server"
	case "passive":
		return "client"
	}
	return ""
}

// setup returns the first a=setup value of an SDP.
func setup(sdp string) string {
	_, rest, ok := strings.Cut(sdp, "a=setup:")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, "\n")
	return strings.TrimSpace(v)
}
