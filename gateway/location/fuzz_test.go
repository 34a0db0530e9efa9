package location

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzLocationFile reads arbitrary bytes as a journal, a snapshot (of
// binary or JSON records) and a legacy JSON snapshot: no panic, no allocation beyond the record bound,
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
	// A journal of JSON records, as versions before the binary one wrote.
	old := appendHeader(nil, journalMagic, 4)
	old = appendAORJSON(f, old, aor, oddBindings(f))
	f.Add(old)
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

// FuzzBindingsRecord decodes arbitrary bytes as the body of a binary
// record: no panic, no allocation beyond what the bytes hold, and what
// decodes encodes back to bytes that decode the same.
func FuzzBindingsRecord(f *testing.F) {
	for _, list := range [][]Binding{oddBindings(f), nil, oddBindings(f)[2:]} {
		buf, err := appendAOR(nil, aor, list)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf[frameLen+1:])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := decodeBindings(body)
		if err != nil {
			if s.AOR != "" || s.Bindings != nil {
				t.Fatalf("error %v with a state", err)
			}
			return
		}
		list := make([]Binding, 0, len(s.Bindings))
		for _, r := range s.Bindings {
			b, err := r.binding()
			if err != nil {
				return // a Contact that does not parse: restore skips it
			}
			list = append(list, b)
		}
		again, err := appendAOR(nil, s.AOR, list)
		if err != nil {
			return // too large
		}
		s2, err := decodeBindings(again[frameLen+1:])
		if err != nil {
			t.Fatalf("re-encoded record: %v", err)
		}
		if s2.AOR != s.AOR || len(s2.Bindings) != len(list) {
			t.Fatalf("re-encoded %q with %d bindings, was %q with %d", s2.AOR, len(s2.Bindings), s.AOR, len(list))
		}
		for i, r := range s2.Bindings {
			b, err := r.binding()
			if err != nil || !equalBinding(&b, &list[i]) {
				t.Fatalf("binding %d reads back as %+v (%v), was %+v", i, b, err, list[i])
			}
		}
	})
}
