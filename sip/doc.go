// Package sip is Switchboard's SIP protocol core: the message model, the
// parser and serialiser, URIs, headers and the errors a transport needs to
// answer bad input. It knows nothing of sockets: transports hand it bytes
// and get messages back. Transactions, dialogs and digest authentication live
// in the subpackages transaction, dialog and digest.
//
// # Design
//
// A parsed message keeps one copy of the bytes it came in; every string in
// it (method, URI parts, header names and values, parameters) points into
// that copy, so a REGISTER parses in three allocations. Parameters are kept
// as the text that carried them ([Params]) and scanned on demand, which is
// cheaper than building a map for the two or three that anyone reads.
//
// Headers are kept in order with their exact lines. A message that passes
// through unchanged serialises byte for byte as it came; a changed header is
// written in canonical form. The headers every element needs — Via, From,
// To, Call-ID, CSeq, Max-Forwards, Content-Length and Contact — are parsed
// and checked with the message, so a malformed one is rejected before any
// transaction exists, with a [ParseError] carrying the status and reason
// phrase to answer with ("400 Malformed Via"). Other typed headers are
// parsed on first use and cached.
//
// The parser follows the grammar of RFC 3261 §25 and is checked against every
// message of RFC 4475 and RFC 5118. It bounds message size, header count,
// line length and URI length ([Limits]).
package sip
