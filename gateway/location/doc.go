// Package location is the gateway's location service (RFC 3261 §10): the
// bindings from an address of record ("sip:alice@example.com") to the
// contacts where its user agents can be reached, with what RFC 5626
// (outbound) and RFC 3327 (Path) add to a binding — the flow the
// registration came over, the instance and reg-id that name that flow, and
// the Path to route back through.
//
// [Store] is the interface the registrar and the proxy use. It is shaped so
// that a shared store (a database, another node) can implement it later:
// every method takes a context and can fail, bindings are values, and the
// rule that decides which stored binding a new one replaces is a function
// of the bindings alone ([Binding.Matches]).
//
// [Memory] is the embedded implementation: bindings are served from
// memory and kept durable in the data directory by a journal and a
// snapshot. Every change appends a record holding the whole state of its
// AOR to the journal, and the call returns once the record is synced;
// changes made while the journal is being synced are written and synced
// together next (group commit), so concurrent REGISTERs share one sync.
// The journal has no writer goroutine: the first caller to find it free
// writes and syncs the batch itself.
// Each record carries its length and a CRC-32C: a record cut short by a
// crash at the end of the journal is recognised and dropped (it was never
// acknowledged), and damage anywhere else is reported with the file and
// offset. When the journal passes JournalLimit it is compacted: a snapshot
// of the whole state is written to a temporary file, synced, renamed over
// the old one and its directory synced, and the journals it replaces are
// removed. Expired bindings are never returned, are swept periodically on
// the injected clock, and are left out of snapshots and restarts.
//
// Flows do not survive a restart: a connection (TCP, TLS, WebSocket) dies
// with the process. A binding that can only be reached over its flow
// ([Binding.NeedsFlow]) over a connection — a browser's ".invalid"
// contact, an outbound registration over TCP or WebSocket, a NATed phone
// on TCP — is therefore never written to disk: it could not be reached
// after a restart anyway, and its user agent re-registers as soon as it
// reconnects. A browser's registrations and refreshes cost no disk write.
package location
