// Package registrar implements the gateway's registrar (RFC 3261 §10.3)
// with digest authentication, outbound (RFC 5626 §6) and Path (RFC 3327).
//
// A [Registrar] is a pure request → response function: ServeRegister takes
// a parsed REGISTER and returns the response to send, so it is tested with
// parsed messages and wired to a server transaction by the gateway. It
// keeps no state of its own beyond per-AOR locks; bindings live in a
// [location.Store], accounts in an [accounts.Store].
//
// # Processing
//
// The steps of RFC 3261 §10.3, in order, with the answers chosen where the
// RFCs leave a choice:
//
//   - Request-URI: a SIP or SIPS URI (416 otherwise) naming the domain or
//     one of its aliases (404 "Domain Not Served"). Require with an option
//     tag other than path or outbound gets 420 with Unsupported.
//   - To: a SIP or SIPS URI (400 "To Is Not a SIP URI", RFC 4475 unksm2)
//     with a user part, in the domain (404). These checks come before
//     authentication: they need no secret and reveal nothing about users.
//     The AOR is "sip:user@domain": scheme sip, the user as canonically
//     escaped, the primary domain in lower case (aliases map to it), no
//     port or parameters.
//   - Authentication: Digest only; Authorization headers of other schemes
//     or realms are ignored (RFC 4475 regaut01), and without credentials the
//     answer is 401 with two challenges, SHA-256 then MD5 (RFC 8760). The
//     digest username must be the To user (403 "User Does Not Match To":
//     third-party registration is not offered), and the digest uri a SIP
//     URI of this domain with the Request-URI's user (400 otherwise). A
//     throttled source gets 403 "Too Many Failed Attempts" with Retry-After
//     before any hashing. A wrong password and an unknown user get the
//     same 401 after the same work, and both count as a failure for the
//     throttle. A stale nonce or a replayed nonce count gets 401 with
//     stale=true; a nonce the server did not issue, an algorithm or qop it
//     did not offer, get a fresh 401.
//   - Expiry: the Contact's expires parameter, else the Expires header,
//     else DefaultExpires; values above MaxExpires (however large: RFC 4475
//     scalar02) are lowered to it; a non-zero value below MinExpires fails
//     the whole request with 423 and Min-Expires.
//   - "Contact: *" needs Expires: 0 and no other Contact (400), and removes
//     every binding of the AOR.
//   - Ordering (§10.3 step 7): a binding is refreshed or removed only by a
//     REGISTER with another Call-ID or a higher CSeq. Otherwise the whole
//     request fails with 500 "Out of Order", as §12.2.2 answers an
//     out-of-order request within a dialog: nothing in the request is
//     malformed, so 400 would be wrong, and a UA that retries later with a
//     new CSeq succeeds. A copy of an accepted REGISTER, byte for byte
//     from the same place within 64×T1 (digest.Server.VerifyResent), is
//     the client sending again an answer it did not hear: it is checked as
//     the first was (a refusal is repeated), then gets a 200 with the
//     bindings as they are; nothing is applied again.
//   - Outbound: a Contact with +sip.instance and reg-id in a REGISTER with
//     "Supported: outbound" registers a flow, keyed by instance and reg-id
//     rather than by Contact URI, so a re-REGISTER over a new connection
//     replaces the old flow's binding. When the registrar is not the first
//     hop, the top Path must carry ";ob" (else 439). A reg-id without
//     instance or without Supported: outbound is ignored; two Contacts with
//     reg-id and a non-zero expiry are a 400.
//   - Path: Path headers are stored with the binding whenever present (the
//     edge proxy that added them needs them to reach the UA) and echoed in
//     the 200 when the request had "Supported: path".
//   - Limits: when the location store refuses the request for giving its
//     AOR too many bindings, the answer is 503 "Too Many Registrations"
//     with Retry-After set to when the AOR's first binding expires: the
//     condition is temporary, whereas 403 would make most UAs stop trying.
//     Only a request that adds bindings can be refused.
//
// The changes of one REGISTER are one [location.Store.Update]: the store
// checks the order and applies every Contact in one atomic step, all or
// nothing (§10.3 step 8), so that two REGISTERs of one AOR cannot
// interleave even on two gateways sharing a store, and a shared store
// costs one round trip per REGISTER. The 200 is built only after Update
// returned, and a store returns only once a change is durable: a REGISTER
// answered 200 survives a crash of the gateway. A store failure is a 500,
// and the user agent tries again; a shared store out of reach
// (location.ErrUnavailable) is a 503 with Retry-After.
//
// The 200 lists every current binding of the AOR, each Contact with its
// parameters as registered (+sip.instance and reg-id echoed) and an
// expires parameter — JsSIP and SIP.js treat a 200 that does not list
// their Contact with expires as a failed registration — and carries Date.
// When outbound was used it has "Require: outbound", "Supported: outbound"
// and, for connection-oriented transports, Flow-Timer.
package registrar
