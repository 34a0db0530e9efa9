// Package media is the media half of Switchboard's B2BUA: for a call that
// crosses between a WebRTC endpoint (a browser: UDP/TLS/RTP/SAVPF, ICE,
// DTLS-SRTP, BUNDLE, rtcp-mux) and a classic SIP endpoint (a phone or trunk:
// RTP/AVP), it translates the SDP offers and answers and relays the packets.
// It knows SDP, RTP and WebRTC, not SIP: the gateway carries the SDP bodies
// in its dialogs and maps the errors to responses.
//
// # Engine and bridges
//
// An [Engine] holds what calls share, configured once by [Options] (the
// pion SettingEngine idea): the RTP port pool, one UDP port for every
// WebRTC leg (pion's ICE UDP mux, told apart by ICE username), the address
// announced to peers, the codec policy, the clock and the logger. Each call
// crossing gets a [Bridge]: one pion PeerConnection for the web leg, one
// even/odd UDP port pair for the RTP leg, and the relay between them.
//
// # Offer/answer
//
// SDP goes in and out as []byte. The gateway calls, per call:
//
//	browser calls phone:      WebOffer → (INVITE phone) → RTPAnswer → (200 to browser)
//	phone calls browser:      RTPOffer → (INVITE browser) → WebAnswer → (200 to phone)
//	phone INVITE without SDP: LateOffer → (INVITE browser) → WebAnswer → (200 to phone,
//	                          with the gateway's offer) → RTPAnswer (the ACK's answer)
//	                          [→ WebDropVideo → (re-INVITE browser) → WebAnswer, when the
//	                          phone refused the video the browser took]
//	phone re-INVITE:          RTPReoffer (answered on the RTP leg alone; it fails
//	                          with ErrChangesWeb when video comes or goes, which
//	                          needs the browser renegotiated)
//	phone re-INVITE, no SDP:  RTPRefresh → (200 to phone) → RTPAnswer (the ACK's answer)
//	browser re-INVITE:        WebReoffer → (re-INVITE phone) → RTPAnswer → (200 to browser)
//	re-offer rejected:        Rollback (the session in force stays)
//
// RTPAnswer may be called again with another answer to the same offer (a
// 183 with early media from one address, then the 200 from another).
//
// There is no transcoding, so both legs must share a codec: an offer is
// turned into an offer for the other leg with the codecs of the offer that
// the policy allows, in the offerer's order and numbering, and the WebRTC
// answer is restricted to what the phone accepted. Browsers speak G.711
// and G.722 as well as Opus, so a phone needs no Opus. telephone-event (RFC
// 4733) is kept at the clock rates of the audio codecs kept. When nothing
// is shared the methods return an error wrapping [ErrNoCommonCodec], which
// the gateway answers with 488 Not Acceptable Here. Each leg keeps its own
// payload type numbers; the relay rewrites them per packet.
//
// SIP has no trickle ICE: every SDP for the browser is returned once ICE
// gathering is complete, with all candidates. Candidates of the browser
// with .local (mDNS) addresses are ignored, not fatal: the browser's
// connectivity checks reach the gateway's host candidate anyway (peer
// reflexive). The gateway's own candidates are host candidates of BindIP
// only, or PublicIP in their place (1:1 NAT), and mDNS is never used.
//
// Media direction (sendrecv, sendonly, recvonly, inactive, and c=0.0.0.0
// hold) is honoured on both legs and enforced by the relay: each SDP the
// gateway writes on one leg mirrors what the other leg allows, and packets
// are forwarded in a direction only when the sender's leg may send and the
// receiver's leg may receive. A re-INVITE from the phone is answered on the
// RTP leg alone; the browser's session (ICE, DTLS) is not renegotiated.
//
// # Video
//
// A call carries video beside the audio when both ends offer a format of
// the video policy ([DefaultVideoCodecs]: VP8 and H.264 in packetization
// modes 1 and 0; [Options.VideoCodecs], or [BridgeOptions.Codecs] per bridge). It
// is relayed, never transcoded, on its own even/odd port pair of the RTP
// leg and a second transceiver of the one bundled PeerConnection; H.264
// matches on packetization mode and profile (however the profile-level-id
// spells it: the browser is offered the policy's spelling), and an
// answer's level is never above the offer's (RFC 6184). A peer that
// refuses video (port 0) leaves the call audio-only. After a phone's
// INVITE without SDP ([Bridge.LateOffer]) the browser is offered a
// sendrecv video stream with every format of the policy; when it takes
// one, the gateway's offer in the 200 to the phone has m=video with the
// formats the browser took, on the video port pair, and the phone's
// answer in the ACK sets up the video route. A phone that refuses it
// there (port 0) gets an audio-only call: nothing is relayed as video,
// and [Bridge.WebDropVideo] makes the browser's re-offer without it (the
// gateway renegotiates the browser). A browser that refused the late
// offer's video is not asked again when the phone adds video later: the
// phone's re-offer is answered with video port 0. Keyframe requests are translated: the
// browser's PLI or FIR becomes RTCP feedback (PLI, else FIR) towards a
// phone that offered a=rtcp-fb for it, or a call of the function given to
// [Bridge.OnKeyframeRequest] (the gateway sends SIP INFO
// picture_fast_update, RFC 5168); the phone's PLI or FIR, or
// [Bridge.RequestKeyframe], is a PLI to the browser. At most one
// keyframe request goes each way per 500 ms of the injected clock; the
// others are dropped and counted (a keyframe is on its way already). The gateway ends the
// browser's congestion control: transport-wide feedback from pion's
// interceptor, and the phone's b=TIAS or b=AS both in the SDP for the
// browser and as REMB. Towards the phone the gateway reports on video
// every 5 s of the injected clock, on its RTCP port (a=rtcp, or the RTP
// port with rtcp-mux): an SR for the stream it sends (NTP time of the
// clock, the RTP time extrapolated from the last packet sent) once it sent
// some, else an RR, with a report block on the phone's stream (loss,
// jitter, LSR/DLSR from the phone's SR) and an SDES CNAME. With it goes
// an SR for the audio the gateway sends the phone, at the same NTP time
// and with the same CNAME, so that the phone can put the two in sync (lip
// sync as good as the arrival times of the browser's packets: the
// browser's own SRs are not translated). An audio-only call sends no RTCP
// to the phone, as before. A browser that adds or removes video in a
// re-INVITE has it carried to the phone (WebReoffer).
//
// # The RTP leg
//
// RTP uses an even port of [Options.RTPPorts] and RTCP the next one,
// unless the phone offered a=rtcp-mux. A released pair drains: it stays
// bound for [Options.DrainTime] before another call may use it, so late
// packets of the old call never reach a new one. RTP is symmetric: the
// first packet that parses as RTP with a negotiated payload type latches
// its source address, the gateway then sends there and drops (and counts)
// packets from any other source. Only signalling moves the latch: a new
// address in the phone's SDP allows a new latch, and packets from the
// SDP's own address take it over from a stranger that got in first; a
// stray packet never does (unless [Options.RelatchAfter] allows it after
// silence).
//
// # The relay
//
// Phone → browser: each packet is read from the RTP socket, checked,
// counted, given the web leg's payload type and written to a track of the
// PeerConnection (pion adds SRTP). The browser-bound stream keeps one SSRC
// and continuous sequence numbers and timestamps whatever happens behind
// it (another source after early media, a re-INVITE): the relay rewrites
// them with offsets. Browser → phone: pion decrypts, the relay maps the
// payload type and rewrites the stream the same way onto the gateway's own
// SSRC. RFC 4733 events are relayed like audio, with their own payload
// types; [Bridge.SendDTMF] generates them towards the phone (for SIP INFO).
// RTCP is terminated on each leg: pion runs it for the web leg (sender and
// receiver reports every 5 s, as browsers do for audio); on the RTP leg it
// is counted (and, in a call with video, the gateway sends its own
// reports: see Video).
//
// # Lifetime and statistics
//
// A bridge ends on [Bridge.Close], when the context given to
// [Engine.NewBridge] is done, when no RTP arrived from either leg for
// [Options.InactivityTimeout] (checked on the injected clock), or when the
// WebRTC leg fails: [Bridge.Done] is closed and [Bridge.Err] says why
// ([ErrInactive], [ErrWebFailed]), so that the gateway sends BYE on both
// legs. Every goroutine belongs to a bridge (its socket readers and pion's
// track readers) or to the engine, and is gone when Close returns.
//
// On Linux one goroutine of the engine reads the audio RTP and RTCP
// sockets of every bridge and the shared ICE socket (an epoll set of its
// own, recvmmsg): it relays the browsers' audio on the fast path to the
// phones, sends the phones' audio to browsers on the fast path with
// sendmmsg, and queues the rest of the ICE socket's datagrams for pion's
// mux. A wake-up handles every datagram that is there, both directions,
// where a reader per socket woke for each. The sockets are out of Go's
// network poller. Elsewhere each bridge reads its sockets with goroutines.
//
// [Bridge.Stats] returns a plain snapshot per leg: packets and bytes each
// way, loss from sequence gaps, RFC 3550 interarrival jitter, time to the
// first packet, drops by cause, and a one-way-audio flag. [Engine.Stats]
// counts bridges and ports. Metrics exporters read these.
package media
