// Package b2bua is the gateway's back-to-back user agent: the call control
// of calls that cross between a WebRTC endpoint (a browser, reached over
// WS or WSS, whose SDP has ICE, a DTLS fingerprint and
// UDP/TLS/RTP/SAVPF) and a classic SIP endpoint (a desk phone, a PBX, a
// trunk: RTP/AVP). Calls between two browsers or two phones are the
// proxy's; only a crossing needs the B2BUA and a media bridge.
//
// # The life of a call
//
// The proxy authenticates the caller, finds the target and, when the call
// crosses, hands the INVITE's server transaction to [B2BUA.Call] with a
// [Target] (the registered Contact or the trunk's URI, where to send, the
// route, and whether the callee is a browser). Call then:
//
//  1. checks the INVITE as a UAS does (420, 415, 406, 400, 422), answers
//     100 Trying, and makes a [media.Bridge];
//  2. turns the caller's offer into the callee's (WebOffer for a browser
//     calling a phone, RTPOffer for a phone calling a browser, LateOffer
//     for a phone's INVITE without SDP) and sends the callee a new INVITE:
//     its own Call-ID, From tag, CSeq and the gateway's Contact, the
//     caller's From and To URIs;
//  3. relays the callee's provisional responses to the caller with the
//     gateway's To tag: 180 as is, 183 with its SDP translated (early
//     media is bridged, so the browser hears ringback and announcements),
//     and PRACKs those the callee sends reliably (RFC 3262);
//  4. on the callee's 2xx: ACKs it, translates its SDP into the caller's
//     answer (or, after a late offer, into the gateway's offer, whose
//     answer comes in the caller's ACK), and answers the caller 200,
//     retransmitting it until the ACK arrives; when that answer refuses
//     the video the browser took, the browser is renegotiated without it
//     (a re-INVITE, media.WebDropVideo);
//  5. on a failure response: relays it (486, 480, 404, 603, 488…; a
//     redirect becomes 480, a challenge to the gateway 502), once, after
//     a single retry with a longer session interval for a 422;
//  6. on the caller's CANCEL: cancels the callee's INVITE and answers 487
//     at once; a 2xx that crosses the CANCEL is acknowledged and ended
//     with BYE.
//
// A proxy that forks (the gateway's does, for every INVITE) runs each
// branch that crosses through [B2BUA.Branch] instead: the same call,
// whose caller-side responses come on [Leg.Responses] for the proxy to
// forward like those of any branch, and which [Leg.Cancel] gives up
// ([Leg.CancelWithReason] when another branch answered, so that the
// callee's CANCEL says so).
//
// Call returns once the caller has its final response. An answered call
// then lives on its own until a BYE from either leg (200 there, BYE on
// the other leg, bridge closed), the bridge's end (no RTP for the
// inactivity timeout, or a failed WebRTC leg: BYE on both legs), a session
// that expired, [B2BUA.Hangup], or [B2BUA.Close].
//
// # In-dialog requests
//
// The binary passes every request with a To tag to [B2BUA.HandleInDialog]
// before the proxy; it takes those of its own dialogs and reports false
// for the others:
//
//   - BYE ends the call.
//   - re-INVITE or UPDATE with SDP from the SIP side (hold with sendonly
//     or inactive, resume, a new address) is answered on that leg alone
//     with media.RTPReoffer. One that adds or removes video
//     (media.ErrChangesWeb) is carried to the browser as a re-INVITE
//     (RTPReofferWeb; same ICE and DTLS session) and the phone answered
//     from the browser's answer (WebAnswer); a refusal there rolls back
//     and is relayed. A re-INVITE without SDP gets the gateway's current
//     SDP as an offer (RTPRefresh); the answer comes in the ACK.
//   - re-INVITE or UPDATE with SDP from the browser is carried to the SIP
//     side as a re-INVITE (WebReoffer), and the browser answered from the
//     phone's answer; a refusal there rolls the bridge back and is relayed.
//     Concurrent offers on the call get 491.
//   - UPDATE without SDP is a session refresh, answered on its leg.
//   - INFO picture_fast_update (RFC 5168, application/media_control+xml)
//     from the SIP side asks the browser for a keyframe (a PLI,
//     media.RequestKeyframe) and gets 200; it goes no further. The other
//     way, a browser's keyframe request for a phone that takes no RTCP
//     feedback becomes an INFO picture_fast_update to the phone, one at
//     a time (media.OnKeyframeRequest).
//   - a 488 for want of a common codec carries a Warning (399) naming
//     what each side offered (media.CodecMismatchError).
//   - INFO with application/dtmf-relay or application/dtmf from the browser
//     (what JsSIP sends) becomes RFC 4733 events towards the SIP side
//     (media.SendDTMF) and gets 200; any other INFO, and MESSAGE, is relayed
//     to the other leg and its answer relayed back.
//   - the ACK of a 2xx (which the transaction layer hands over with a nil
//     server transaction) stops the 2xx's retransmissions.
//
// # Session timers
//
// Each leg has its own session timer (RFC 4028), never carried across.
// The callee is asked for Options.SessionExpires with Supported: timer and
// refreshes, or is refreshed, as its 2xx says; the caller's
// Session-Expires is granted (refreshed by the caller when it supports
// timers, as JsSIP does) and answered with Require: timer. The gateway
// refreshes with UPDATE where the peer allows it, else with a re-INVITE
// carrying its current SDP, and never re-INVITEs a browser. A leg whose
// peer does not refresh in time ends the call with BYE.
//
// # Concurrency
//
// A B2BUA is safe for concurrent use. Until the callee answers, a call is
// owned by the goroutine running Call (the caller's INVITE handler):
// whoever else ends it cancels its context. Once answered, each in-dialog
// request is served in its own handler goroutine, and one watcher
// goroutine per call acknowledges the callee's 2xx retransmissions and
// follows the bridge. Offer/answer exchanges are serialised per call.
// With Options.Order, the requests of one leg wait in HandleInDialog,
// before they take anything of the call, for those of the same leg that
// arrived before them to be relayed (sent, not answered) or answered: the
// other leg gets them in the order they arrived, with CSeqs that grow in
// that order (two NOTIFYs of a REFER, an INFO then a BYE). Whatever sends
// a request in a leg's dialog — a relay, a session refresh, a keyframe
// request, a BYE — takes its CSeq and hands it to the transaction layer
// under the leg's turn, so that the requests of a leg leave in the order
// of their CSeqs.
// Timers run on Options.Clock. Every goroutine the package starts is
// counted, and [B2BUA.Close] waits for them.
//
// Every log line of a call carries its id ("call"), the id of
// [B2BUA.Calls] and [B2BUA.Hangup].
package b2bua
