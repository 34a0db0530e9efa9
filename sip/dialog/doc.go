// Package dialog keeps the state of SIP dialogs (RFC 3261 §12, with the
// parts of RFC 3262, 3311, 6026 and 6665 that touch them) and builds the
// requests sent in them.
//
// It is pure state and message building: no sockets, no timers, no
// transactions. The transaction layer matches responses and retransmissions;
// the sending side adds the Via of every request, as only it knows the
// transport. This package decides what goes into the Request-URI, Route, To,
// From, Call-ID, CSeq and Contact, and how each message moves a dialog
// along.
//
// # Creating dialogs
//
// A dialog is made from the request that creates it and a response with a
// To tag: [NewUAC] at the side that sent the request, from a 101-199 (early
// dialog, INVITE only) or 2xx (confirmed dialog) it received; [NewUAS] at
// the side that received the request, from the response it sends. The UAC
// takes its route set from the response's Record-Route in reverse order,
// the UAS from the request's in order; each takes the peer's Contact as the
// remote target. INVITE, SUBSCRIBE and REFER create dialogs; a
// subscription dialog created by a NOTIFY that arrives before the 2xx to
// its SUBSCRIBE (RFC 6665) is not supported.
//
// An INVITE may fork: several early dialogs, one per To tag, then one or
// more 2xx. [Forks] routes every response to the INVITE to its fork's
// dialog, confirms the first 2xx's, ends the other early ones and flags any
// later 2xx as extra, to be acknowledged and ended with a BYE (RFC 3261
// §13.2.2.4).
//
// # Moving a dialog along
//
// Four methods feed it the messages of the dialog, each in the direction
// its name says: [Dialog.ReceiveRequest] (CSeq order, target refresh, BYE),
// [Dialog.ReceiveResponse] (2xx confirms an early dialog and fixes its route
// set; 2xx to re-INVITE or UPDATE refreshes the target; failure, 481 and 408
// terminate, but a 481 or 408 to NOTIFY, SUBSCRIBE or REFER in an INVITE's
// dialog ends only that subscription, RFC 5057), [Dialog.SendResponse] (UAS confirmation) and the builders
// [Dialog.NewRequest] and [Dialog.NewAck]. States only move forwards:
// [Early] → [Confirmed] → [Terminated].
//
// Errors are sentinels wrapped with detail, to compare with [errors.Is];
// their documentation names the response a UAS sends when a received request
// causes them.
//
// # Building requests
//
// [Dialog.NewRequest] applies RFC 3261 §12.2.1.1: loose routing when the
// first route has the lr parameter (Request-URI = remote target, Route =
// route set), strict routing otherwise (Request-URI = first route, Route =
// the rest plus the remote target). CSeq numbers increase by one per
// request; an ACK to a 2xx reuses its INVITE's number ([Dialog.NewAck]).
// Requests come without Via, which the sending side adds.
//
// # Concurrency
//
// A [Dialog], a [Forks] and a [Set] are safe for concurrent use: the
// gateway touches a dialog from the goroutines of both call legs, the
// transaction timers and its API. Messages passed in are read and never
// kept; since reading a [sip.Headers] may fill its parse cache, a
// message must not be shared with another goroutine while a call reads it.
package dialog
