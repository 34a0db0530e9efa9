package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/switchboard/switchboard/sip"
)

// Flow tokens (RFC 5626 §5.2, RFC 3327): an edge proxy that puts itself in
// a Path or Record-Route must find the flow again when a request comes back
// to that URI. The token carries the flow in the URI itself, so the proxy
// keeps no state, and an HMAC makes it unforgeable: without it anyone could
// steer requests into another user's connection.
//
// Layout before base64url: version (1) | flow (8) | port (2) | IP length
// (1: 4 or 16) | IP | transport length (1) | transport | HMAC-SHA256
// truncated to 16 bytes over everything before it.
const (
	flowTokenVersion = 1
	flowTokenMACLen  = 16
)

var tokenEncoding = base64.RawURLEncoding

// EncodeFlowToken returns an opaque token naming addr (transport, address
// and flow id), protected by an HMAC keyed with secret. The token uses only
// characters that are valid unescaped in a SIP URI user part and in a
// parameter value (RFC 3261 §25.1: alphanumerics, '-' and '_'), e.g.
// "sip:TOKEN@edge.example.com;lr;ob". secret should be at least 16 random
// bytes, shared by every instance that must decode the token.
func EncodeFlowToken(secret []byte, addr sip.Addr) string {
	ip := addr.AddrPort.Addr().Unmap().WithZone("")
	ipb := ip.AsSlice()
	tr := addr.Transport
	if len(tr) > 255 {
		tr = tr[:255]
	}
	b := make([]byte, 0, 13+len(ipb)+len(tr)+flowTokenMACLen)
	b = append(b, flowTokenVersion)
	b = binary.BigEndian.AppendUint64(b, addr.Flow)
	b = binary.BigEndian.AppendUint16(b, addr.AddrPort.Port())
	b = append(b, byte(len(ipb)))
	b = append(b, ipb...)
	b = append(b, byte(len(tr)))
	b = append(b, tr...)
	b = append(b, flowTokenMAC(secret, b)...)
	return tokenEncoding.EncodeToString(b)
}

// DecodeFlowToken returns the address that EncodeFlowToken encoded in
// token with the same secret. Any change to the token, or another secret,
// gives an error wrapping ErrBadFlowToken.
func DecodeFlowToken(secret []byte, token string) (sip.Addr, error) {
	// The largest valid token (IPv6, a 255-byte transport name) is well
	// under 512 characters; refusing longer input bounds the work.
	if len(token) > 512 {
		return sip.Addr{}, fmt.Errorf("flow token too long: %w", ErrBadFlowToken)
	}
	b, err := tokenEncoding.DecodeString(token)
	if err != nil {
		return sip.Addr{}, fmt.Errorf("flow token encoding: %w", ErrBadFlowToken)
	}
	if len(b) < 1+8+2+1+flowTokenMACLen {
		return sip.Addr{}, fmt.Errorf("flow token truncated: %w", ErrBadFlowToken)
	}
	body, mac := b[:len(b)-flowTokenMACLen], b[len(b)-flowTokenMACLen:]
	if !hmac.Equal(mac, flowTokenMAC(secret, body)) {
		return sip.Addr{}, fmt.Errorf("flow token signature: %w", ErrBadFlowToken)
	}
	// The MAC is valid, so the body is one we wrote; the checks below only
	// guard against a secret shared with code that writes another layout.
	if body[0] != flowTokenVersion {
		return sip.Addr{}, fmt.Errorf("flow token version %d: %w", body[0], ErrBadFlowToken)
	}
	flow := binary.BigEndian.Uint64(body[1:9])
	port := binary.BigEndian.Uint16(body[9:11])
	rest := body[11:]
	n := int(rest[0])
	if n != 4 && n != 16 || len(rest) < 1+n+1 {
		return sip.Addr{}, fmt.Errorf("flow token address: %w", ErrBadFlowToken)
	}
	ip, _ := netip.AddrFromSlice(rest[1 : 1+n])
	rest = rest[1+n:]
	if int(rest[0]) != len(rest)-1 || rest[0] == 0 {
		return sip.Addr{}, fmt.Errorf("flow token transport: %w", ErrBadFlowToken)
	}
	return sip.Addr{
		Transport: string(rest[1:]),
		AddrPort:  netip.AddrPortFrom(ip, port),
		Flow:      flow,
	}, nil
}

func flowTokenMAC(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return m.Sum(nil)[:flowTokenMACLen]
}
