// Package accounts holds the SIP accounts the gateway authenticates, and
// the throttle that slows down password guessing against them.
//
// An [Account] never holds a password: only the digest HA1 values
// (H(user:realm:password), see [digest.HA1]) for MD5 and SHA-256, which
// authenticate in one realm and nowhere else. [FromPassword] and
// [FromUserList] (the SWITCHBOARD_USERS format) hash passwords as they load
// them, and the plain text goes no further.
//
// A [Store] is read on every REGISTER and INVITE and replaced whole when the
// configuration is reloaded (SIGHUP), so reads take no lock: [Store.Set]
// swaps an atomic pointer to an immutable map.
//
// A [Throttle] counts authentication failures — REGISTER and proxy digest,
// admin API tokens, and anonymous probes for addresses with no target — per
// source address and per user name in a sliding window, and refuses a
// source that failed too often, before any hashing is done for it. A user
// name that failed too often is refused only to the addresses its user
// never authenticated from, so that guessing from many addresses slows
// down without locking the user out. One Throttle serves every origin; its
// memory is bounded.
//
// [digest.HA1]: https://pkg.go.dev/github.com/switchboard/switchboard/sip/digest#HA1
package accounts
