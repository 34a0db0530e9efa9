package media

import (
	"net"
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
	for _, s := range pc.GetStats() {
		if ts, ok := s.(webrtc.TransportStats); ok && ts.SRTPCipher != "" {
			t.SRTPProfile = ts.SRTPCipher
		}
	}
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
