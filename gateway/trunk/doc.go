// Package trunk is what the gateway knows about SIP trunks beyond their
// configuration (package config): where outbound calls go, who inbound
// calls ring, which sources are trunks, and the registrations the gateway
// keeps at providers.
//
//   - [DialPlan] maps a dialed number to a trunk and the number to send
//     it, with the file's [[route]] rules (first match wins, strip, prefix).
//   - [DIDMap] maps an inbound number (a DID) to a local user.
//   - [TrustedSources] maps a source address to the trunk it belongs to,
//     from trusted_sources or the trunk host's DNS addresses.
//   - [Registration] keeps a registration at a provider (RFC 3261 §10.2):
//     it answers digest challenges, obeys 423 Interval Too Brief, refreshes
//     before expiry, backs off on failure and unregisters on the way out.
//
// DialPlan, DIDMap and TrustedSources are immutable tables (TrustedSources
// swaps its table atomically when it re-resolves), built from a loaded
// config.File and rebuilt on reload; lookups take no lock.
//
// The package sends nothing itself: a Registration sends through a
// [Requester] (a *transaction.Layer) to addresses found by a [Resolver]
// (the binary adapts transport/locate), on an injected clock, so that it
// is tested without sockets, DNS or sleeps.
package trunk
