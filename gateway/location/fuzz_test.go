package location

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzLocationFile reads arbitrary bytes as a journal, a snapshot and a
// legacy JSON snapshot: no panic, no allocation beyond the record bound,
// and what scan reports holds: the damage is where reading stopped, a
// clean read ends at the end of the data, and the bytes before the end
// read again the same.
func FuzzLocationFile(f *testing.F) {
	ss := states(f, 3)
	journal, offs := encodeFile(f, journalMagic, 4, ss, false)
	snap, _ := encodeFile(f, snapshotMagic, 4, ss, true)
	f.Add(journal)
	f.Add(snap)
	f.Add(journal[:offs[2]+5])                                         // torn
	f.Add(append(bytes.Clone(journal[:offs[1]]), make([]byte, 40)...)) // zeros after a record
	bad := bytes.Clone(journal)
	bad[offs[1]+frameLen+3] ^= 1
	f.Add(bad) // damage in the middle
	legacy, _ := json.Marshal(legacySnapshot{Version: 1, Bindings: ss[0].Bindings})
	f.Add(legacy)
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, magic := range []string{journalMagic, snapshotMagic} {
			n := 0
			res, err := scan(bytes.NewReader(data), int64(len(data)), "fuzz", magic, func(s aorState) {
				n++
				for _, r := range s.Bindings {
					if b, err := r.binding(); err == nil {
						_ = durable(&b) // what restore asks of every binding
					}
				}
			})
			if err != nil {
				t.Fatalf("scan of bytes failed: %v", err)
			}
			switch {
			case res.end < 0 || res.end > int64(len(data)):
				t.Fatalf("end %d outside 0..%d", res.end, len(data))
			case n != res.records:
				t.Fatalf("%d records given, %d counted", n, res.records)
			case res.corrupt != nil && res.corrupt.Offset != res.end:
				t.Fatalf("damage at %d, reading stopped at %d", res.corrupt.Offset, res.end)
			case res.corrupt != nil && res.torn:
				t.Fatal("both damaged and torn")
			case res.corrupt == nil && !res.torn && res.end != int64(len(data)) && len(data) >= headerLen:
				t.Fatalf("clean read ended at %d of %d", res.end, len(data))
			}
			if res.end >= headerLen {
				again, err := scan(bytes.NewReader(data[:res.end]), res.end, "fuzz", magic, func(aorState) {})
				if err != nil || again.torn || again.corrupt != nil || again.records != res.records || again.end != res.end {
					t.Fatalf("the read prefix reads differently: %+v then %+v", res, again)
				}
			}
		}
		if states, err := parseLegacy(data); err == nil {
			for _, s := range states {
				for _, r := range s.Bindings {
					r.binding()
				}
			}
		}
	})
}
