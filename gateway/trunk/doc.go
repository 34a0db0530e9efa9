// Package trunk is what the gateway knows about SIP trunks: what a trunk
// is ([Trunk], with its [DID]s, and the dial rules, [Route]), where
// outbound calls go, who inbound calls ring, which sources are trunks, and
// the registrations the gateway keeps at providers. Package config reads
// these types from the config file; this package does not know the file.
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
// swaps its table atomically when it re-resolves), built from the trunks
// and routes in force and rebuilt on reload; lookups take no lock.
//
// The package sends nothing itself: a Registration sends through a
// transaction.Requester (a *transaction.Layer) to addresses found by a
// locate.Resolver (a *locate.Locator), on an injected clock, so that it
// is tested without sockets, DNS or sleeps.
package trunk
