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
// [Memory] is the embedded implementation: bindings live in memory and are
// written behind, at most every FlushInterval, to a JSON snapshot under the
// data directory, so registrations survive a restart. Expired bindings are
// never returned and are swept periodically on the injected clock.
//
// Flows do not survive a restart: a connection (TCP, TLS, WebSocket) dies
// with the process. A binding that can only be reached over its flow
// ([Binding.NeedsFlow]) — a browser's ".invalid" contact, an outbound
// registration, a NATed phone on TCP — is dropped when the snapshot is
// loaded. It could not be reached anyway, and its user agent re-registers
// as soon as it reconnects.
package location
