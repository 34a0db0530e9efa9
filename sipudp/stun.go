package sipudp

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// STUN (RFC 8489) as far as RFC 5626 §4.4.2 needs it: a UA behind NAT
// sends Binding requests to the SIP port to keep its mapping open and to
// learn whether it changed, and the answer carries the source address.
const (
	stunMagic            = 0x2112A442
	stunBindingRequest   = 0x0001
	stunBindingSuccess   = 0x0101
	stunXORMappedAddress = 0x0020
	stunFingerprint      = 0x8028
	stunFingerprintXOR   = 0x5354554e
	stunHeaderLen        = 20
)

// isSTUNBinding reports a STUN Binding request: the first two bits are
// zero (SIP starts with a letter), the magic cookie is present and the
// length matches the datagram.
func isSTUNBinding(b []byte) bool {
	return len(b) >= stunHeaderLen && len(b)%4 == 0 &&
		binary.BigEndian.Uint16(b[0:2]) == stunBindingRequest &&
		int(binary.BigEndian.Uint16(b[2:4])) == len(b)-stunHeaderLen &&
		binary.BigEndian.Uint32(b[4:8]) == stunMagic
}

// appendSTUNResponse appends the Binding success response to req: the same
// transaction id, XOR-MAPPED-ADDRESS with src, and FINGERPRINT.
func appendSTUNResponse(b []byte, req []byte, src netip.AddrPort) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, stunBindingSuccess)
	b = binary.BigEndian.AppendUint16(b, 0) // length, set below
	b = append(b, req[4:stunHeaderLen]...)  // cookie and transaction id
	ip := src.Addr().Unmap()
	family, addr := byte(0x01), ip.AsSlice()
	if ip.Is6() {
		family = 0x02
	}
	b = binary.BigEndian.AppendUint16(b, stunXORMappedAddress)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(addr)))
	b = append(b, 0, family)
	b = binary.BigEndian.AppendUint16(b, src.Port()^uint16(stunMagic>>16))
	// The address is XORed with the cookie, then the transaction id.
	key := req[4:stunHeaderLen]
	for i, c := range addr {
		b = append(b, c^key[i])
	}
	// FINGERPRINT covers the message with a length that includes it.
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start-stunHeaderLen+8))
	crc := crc32.ChecksumIEEE(b[start:]) ^ stunFingerprintXOR
	b = binary.BigEndian.AppendUint16(b, stunFingerprint)
	b = binary.BigEndian.AppendUint16(b, 4)
	return binary.BigEndian.AppendUint32(b, crc)
}
