package transaction

import (
	"testing"
	"unsafe"
)

// Every request makes a server transaction, and every forwarded one a
// client transaction: their size is allocated and scanned per message.
// The keys of RFC 2543 matching, which RFC 3261 elements never use, are
// kept out of line for that (legacyKeys), and so is what only an INVITE
// has (inviteState). The bounds are the allocator's
// size classes the structs fit now; a field that pushes one over should
// be a choice. ServerTx.wire took ServerTx from the 416-byte class to
// the 448: 32 bytes more per transaction, for the 1,392-byte response
// (and the request text it points into) that a lingering one lets go.
func TestTransactionSizes(t *testing.T) {
	if n := unsafe.Sizeof(ServerTx{}); n > 448 {
		t.Errorf("ServerTx is %d bytes, over the 448-byte size class", n)
	}
	if n := unsafe.Sizeof(inviteState{}); n > 416 {
		t.Errorf("inviteState is %d bytes, over the 416-byte size class", n)
	}
	if n := unsafe.Sizeof(ClientTx{}); n > 576 {
		t.Errorf("ClientTx is %d bytes, over the 576-byte size class", n)
	}
}
