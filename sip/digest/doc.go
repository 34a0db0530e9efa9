// Package digest implements SIP HTTP Digest authentication (RFC 3261 §22)
// with the algorithms of RFC 7616 as profiled for SIP by RFC 8760: MD5,
// SHA-256 and SHA-512-256, their -sess variants, and qop=auth.
//
// It exists so that the registrar, the proxy and the trunk client share one
// careful implementation of the parts that are easy to get subtly wrong:
// header grammar (quoted strings, escapes, folding), constant-time
// comparisons, nonce lifetime and nonce-count replay protection.
//
// The package has three parts:
//
//   - [ParseChallenge], [ParseCredentials] and the String methods of
//     [Challenge] and [Credentials] read and write the header values of
//     WWW-Authenticate / Proxy-Authenticate and Authorization /
//     Proxy-Authorization. Formatting never emits control characters, so a
//     value cannot inject a header line.
//   - [Server] issues challenges and verifies credentials. Its nonces are
//     self-validating (timestamp, random bytes and a MAC, AES-CMAC under a
//     key of the realm and the algorithm), so issuing a challenge stores
//     nothing and challenge floods cost no memory; only nonces that
//     carried a correct response are remembered, to reject replayed nonce
//     counts. Passwords are never needed: the server works
//     from stored HA1 values (see [HA1]).
//   - [Client] answers challenges for outgoing requests, counting nonce uses.
//     [Select] picks the strongest of several challenges.
//
// qop=auth-int (integrity of the message body) is not implemented: SIP
// deployments rarely use it and it would tie this package to message bodies.
package digest
