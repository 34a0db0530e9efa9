// Package proxy is the gateway's transaction-stateful SIP proxy core (RFC
// 3261 §16) with its authorisation policy: it validates requests (§16.3),
// pre-processes their routes (§16.4), decides targets from the location
// service, a routing hook or the Request-URI (§16.5), forwards them with
// Record-Route and forking (§16.6), collects responses in a response
// context and forwards the right ones (§16.7), propagates CANCEL (§16.10)
// and forwards ACKs for 2xx and stray responses statelessly (§16.11).
//
// # Shape
//
// A [Proxy] is a transaction.Handler: the binary hands it every request that
// is neither a REGISTER (the registrar's) nor meant for the gateway itself
// ([Proxy.IsForMe], answered with identity.OptionsResponse). It reaches the rest of
// the gateway through small interfaces — [Locator], [Credentials],
// [TrustedSources], [Throttle], [Router], [FlowTokens] defined here, and
// transaction.Requester and locate.Resolver where they belong — so
// that the packages behind them (location, accounts, trunks, transport) can
// change without this one. The transaction layer and the proxy need each
// other; the usual Go idiom closes the loop:
//
//	var p *proxy.Proxy
//	layer := transaction.New(ctx, sender, transaction.HandlerFunc(
//		func(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) { p.ServeSIP(ctx, tx, req) }),
//		transaction.Config{OnStrayResponse: func(ctx context.Context, res *sip.Response) { p.ForwardResponse(ctx, res) }})
//	p, err := proxy.New(proxy.Options{Transactions: layer, Sender: sender, ...})
//
// # Policy
//
//   - A request from a configured trunk ([TrustedSources]) is trusted.
//   - An out-of-dialog request (no To tag) whose From names one of our
//     domains must authenticate: 407 with Proxy-Authenticate for SHA-256
//     and MD5, verified by sip/digest, and the From user must be the
//     authenticated user (403 otherwise). Failures count in the [Throttle].
//   - An in-dialog request (To tag) is not challenged when it is routed by a
//     Route that this proxy recorded for that call: every Record-Route URI
//     the proxy writes carries a stamp, an HMAC of the Call-ID, so that a
//     forged "Route: <sip:gateway;lr>" with a made-up To tag does not turn
//     the proxy into an open relay. Other in-dialog requests get the
//     out-of-dialog policy.
//   - Anyone may reach the users of our domains (unless
//     Options.AuthenticateAll); only authenticated users may reach other
//     domains (unless Options.LocalOnly), and trunks only ours: no open
//     relay, no toll fraud (403).
//
// # Record-Route and flows
//
// Every forwarded request but ACK is record-routed with ";lr". When the
// request leaves by another transport or interface than it came in, or
// leaves over a connection (a WebSocket or outbound flow), the proxy
// record-routes twice (RFC 5658): the top entry faces the callee, the
// other the caller. An entry facing a connection-oriented flow carries a
// flow token (RFC 5626 §5.2) in its user part, so that in-dialog requests
// from the far side find the connection again. Popping its own Route
// entries, the proxy follows the token that does not name the flow the
// request came from.
//
// # Cluster
//
// Instances of a gateway that share a location store (cluster mode) reach
// a browser's WebSocket, or any connection, only through the instance that
// holds it. The locator of another instance gives such a target a first
// Path entry written by [Proxy.PeerRoute]: the holder's SIP address, the
// connection's flow token and a stamp (an expiry and an HMAC keyed with
// the cluster's shared Secret), with [Target.Peer] set. The holder pops
// its own route, verifies the stamp, and forwards the request over the
// connection without authorising it again: the instance that looked the
// target up did. A stamp that does not verify, or has expired, makes the
// request an ordinary one with a Route of ours. Only instances ever see a
// peer route; each instance record-routes, so requests within the dialog
// keep to both, and the holder keeps no flow token of the connection from
// its peer, which is no party's.
//
// # Forking
//
// Targets are tried by decreasing q-value: targets of equal q in parallel,
// groups in sequence (§16.6). Provisional responses but 100 and every 2xx
// are forwarded at once; a 2xx or a 6xx cancels the other branches; when
// every branch has answered, the best final response goes upstream: a 6xx
// if any, else the lowest class, preferring within 4xx the responses that
// let the caller retry (407, 401, 415, 420, 484) and then the informative
// ones (486 before 480 before 404), with 503 turned into 500 and the
// challenges of every 401 and 407 merged (§16.7). A flow target whose
// connection is gone answers 430 (RFC 5626). Timer C runs per INVITE
// branch (§16.6 step 11); when it fires the branch is canceled and its 487
// reported as 408, or, if nothing was heard from it, treated as a 408. A
// CANCEL from the caller cancels every branch and is answered 487 at once.
// A target with several addresses (RFC 3263) fails over to the next one
// on a transport error, a timeout or a 503.
//
// # Bridged branches
//
// A call between a browser and a phone needs a back-to-back user agent
// that translates SDP and relays media. Options.Bridge is asked about
// each target of an initial INVITE; a target it takes becomes a
// [BridgedBranch]: the bridge calls the target, and the proxy reads the
// branch's responses, already the caller's, from it instead of from a
// client transaction. Everything above holds for such a branch: its
// provisional responses and every 2xx (with their retransmissions) are
// forwarded, it takes part in the choice of the best response, a 2xx
// elsewhere, a 6xx, the caller's CANCEL and Timer C cancel it through
// BridgedBranch.Cancel. So a user with browsers and phones has them all
// ring at once, whoever calls. The caller's ACK and later requests go to
// the bridge, whose Contact the 2xx carries, not through the proxy.
//
// # Concurrency
//
// A Proxy is immutable after New and safe for concurrent use. Each
// request is served in the goroutine that the transaction layer gives its
// server transaction, which owns the request's response context. That
// goroutine reads one client transaction's (or bridged branch's)
// responses itself; when a request forks, each further one gets a
// goroutine that relays its responses. Timers only post events. ServeSIP
// returns once the relays have ended. For an INVITE that is after every
// branch has ended — up to 64*T1 after a 2xx (Timer M), so that
// retransmitted 2xx responses are forwarded — which the server
// transaction's own Timer L matches; for a bridged branch that answered,
// until the bridge has the caller's ACK.
package proxy
