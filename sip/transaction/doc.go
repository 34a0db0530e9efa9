// Package transaction implements the SIP transaction layer: the four state
// machines of RFC 3261 §17 (INVITE and non-INVITE, client and server) with
// the changes of RFC 6026 (the Accepted state and Timers L and M), request
// and response matching (§17.1.3, §17.2.3, including the RFC 2543 fallback),
// and CANCEL handling (§9). It opens no socket: it sends through a Sender,
// and the transport calls Layer.HandleMessage with what it receives.
//
// # Shape
//
// The API follows net/http. New(sender, handler, cfg) returns a Layer. The
// transport calls HandleMessage for every message; a request that starts a
// server transaction is passed to Handler.ServeSIP in a goroutine of its
// own, and the handler answers with ServerTx.Respond. The TU starts a client
// transaction with Layer.Request and reads ClientTx.Responses. Close stops
// everything.
//
// # Threading and the slow TU
//
// Each transaction's state lives under its own mutex; the Layer's maps under
// another, which is never held while anything else is locked. Timers run on
// Config.Clock (a clock.Fake in tests, where Advance fires them
// synchronously) and take only their transaction's lock. Messages are sent
// after the lock is released, so a slow Sender delays only the transaction
// that sends. Nothing waits for the TU:
//
//   - server side, the handler runs in its own goroutine, so a handler that
//     never returns holds only its own transaction (whose retransmissions
//     and timers go on) and one of the MaxServerTransactions slots;
//   - client side, responses go to a buffered channel by non-blocking sends:
//     provisional responses that do not fit are dropped, but a slot is kept
//     for the final response, which is never dropped. Extra 2xx responses
//     to an INVITE (retransmissions, forks) are delivered while there is
//     room; the UAS retransmits a 2xx until it is acknowledged, so a TU that
//     resumes reading still sees it.
//
// The messages of one transaction reach the Sender in the order the state
// machine decides them; two decided at the same moment on different
// goroutines (the automatic 100 Trying and the TU's first response, say)
// may reach it in either order.
//
// Goroutines: one per running handler, bounded by MaxServerTransactions and
// waited for by Close. They are workers of a pool (pool.go): a worker
// whose handler returned waits for the next one (up to 1,024 wait, and
// the one idle longest goes after 10 s), keeping the stack it grew, and
// Close ends them. The timers of all transactions are entries of one
// ordered set (a list per duration, timers.go) with a single clock timer
// for the earliest; the real clock runs it in a short-lived goroutine of
// time.AfterFunc, which fires every timer due, and Close stops it. Nothing else is started.
//
// # Choices
//
//   - 100 Trying: an INVITE server transaction sends it itself if the TU has
//     not responded within Config.TryingDelay (200 ms, §17.2.1), and at once
//     if the INVITE is retransmitted before that. A negative TryingDelay
//     sends it before the handler runs.
//   - 2xx to INVITE (RFC 6026): the client transaction moves to Accepted and
//     passes every 2xx to the TU for Timer M; the TU (dialog layer) sends
//     the ACK itself, outside any transaction. The server transaction moves
//     to Accepted; the TU retransmits the 2xx (ServerTx.Respond2xx does it
//     on the §13.3.1.4 schedule), and ACKs for a 2xx, which match no
//     transaction, reach the Handler with a nil *ServerTx.
//   - ACK for non-2xx: built and sent by the INVITE client transaction
//     (§17.1.1.3), and sent again for each retransmission of the final
//     response. Absorbed by the INVITE server transaction.
//   - CANCEL: the layer answers it. A CANCEL matching an INVITE server
//     transaction that has not sent its final response gets 200 (with the
//     To tag of the INVITE's responses when there is one), then the
//     transaction's Canceled channel is closed and the TU sends 487. A CANCEL
//     that arrives after the final response gets 481, as does (statelessly) a
//     CANCEL that matches nothing. A CANCEL never reaches the Handler. On the
//     client side NewCancel builds a CANCEL (§9.1) and ClientTx.Cancel sends
//     it, waiting for a provisional response first if need be.
//   - Handler contract: a handler that returns without a final response gets
//     one from the layer, 487 if the request was canceled and 500
//     otherwise, so no transaction is left pending forever. Handlers that
//     answer later simply do not return until then.
//   - Errors: a transport error gives a client TU a synthesized 503 and
//     ErrTransport, and terminates a server transaction with ErrTransport
//     (except in Accepted, where Respond returns it and the transaction
//     stays, as RFC 6026 keeps it there to match ACKs). A timeout gives a
//     client TU a synthesized 408 and ErrTimeout.
//   - Bounds: at most MaxServerTransactions server transactions exist, in
//     every state, and as many handler goroutines (a request over 4 KiB
//     counts once per 4 KiB); at most
//     MaxServerTransactionsPerSource of them come from one source (an IP
//     address, an IPv6 /64), and the last eighth is kept for sources that
//     hold few. At a bound, the oldest transaction that only absorbs
//     retransmissions (of the source, or of anyone at the global bound) is
//     ended early to make room; when there is none, the request gets 503
//     with Retry-After, statelessly, and never reaches the Handler. So a
//     flooding source is refused, not everyone. Retransmissions and
//     CANCELs of existing transactions are still served. Client
//     transactions are bounded by MaxClientTransactions: at it the oldest
//     that only lingers after its final response is ended early; when
//     none lingers, Request fails (a CANCEL always goes out). See
//     bound.go.
//   - Lingering: once its handler has returned, a server transaction that
//     only absorbs retransmissions keeps its key and, in Completed, its
//     final response; it lets go of the request (Request returns nil) and,
//     in Accepted and Confirmed, of every response, and its places count
//     what it still holds. A client transaction lets go of its request at
//     its final response. Under call overload those lingering states are
//     most of what is alive.
//   - Admission: Config.Admit is asked before a request starts a server
//     transaction, and may answer it statelessly or drop it: a source
//     blocked for failing authentication then costs no transaction.
//   - Refusals of non-INVITE requests (final responses >= 300) sent within
//     T1 of the request end their transaction at once instead of keeping
//     it for Timer J: the request had no effect, so a retransmission
//     handled anew gets the same answer as quickly, and challenges and
//     refusals, which an attacker can make the server send by the
//     thousand a second, pin no memory (RFC 3261 §8.2.7 lets a UAS
//     challenge statelessly). Later refusals (a proxy's 408) and 2xx
//     responses keep Timer J.
//   - Reliable transports (Addr.Reliable): no retransmissions (A, E, G), and
//     Timers D, I, J and K are zero, so the transaction ends right after the
//     message that completes it.
//   - Ownership: a request given to Request and a response given to Respond
//     belong to the layer, which may retransmit them; do not change them.
//     The request passed to a handler is shared with the layer too: Clone it
//     to forward it.
package transaction
