package location

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
)

// states returns n AOR states with a binding each, distinct.
func states(t testing.TB, n int) []aorState {
	t.Helper()
	var out []aorState
	for i := range n {
		b := Binding{
			AOR: fmt.Sprintf("sip:u%d@example.com", i), Contact: addr(t, fmt.Sprintf("<sip:u%d@192.0.2.%d:5060>", i, i+1)),
			Expires: start.Add(time.Hour), Q: 1000, CallID: fmt.Sprintf("c%d", i), CSeq: uint32(i + 1),
			Source: udpFrom(fmt.Sprintf("192.0.2.%d:5060", i+1)), Received: start,
		}
		out = append(out, aorState{AOR: b.AOR, Bindings: []record{newRecord(&b)}})
	}
	return out
}

// encodeFile returns a file of magic and gen holding the states, and the
// offset at which each record starts.
func encodeFile(t testing.TB, magic string, gen uint64, ss []aorState, end bool) ([]byte, []int) {
	t.Helper()
	buf := appendHeader(nil, magic, gen)
	var offs []int
	for _, s := range ss {
		offs = append(offs, len(buf))
		list := make([]Binding, len(s.Bindings))
		for i, r := range s.Bindings {
			b, err := r.binding()
			if err != nil {
				t.Fatal(err)
			}
			list[i] = b
		}
		var err error
		if buf, err = appendAOR(buf, s.AOR, list); err != nil {
			t.Fatal(err)
		}
	}
	if end {
		offs = append(offs, len(buf))
		buf = appendEnd(buf, uint64(len(ss)))
	}
	return buf, offs
}

// scanBytes scans data and returns the result with the AORs read.
func scanBytes(t testing.TB, data []byte, magic string) (scanResult, []string) {
	t.Helper()
	var aors []string
	res, err := scan(bytes.NewReader(data), int64(len(data)), "test-file", magic, func(s aorState) {
		aors = append(aors, s.AOR)
	})
	if err != nil {
		t.Fatal(err)
	}
	return res, aors
}

func TestScanWhole(t *testing.T) {
	ss := states(t, 3)
	data, _ := encodeFile(t, snapshotMagic, 7, ss, true)
	res, aors := scanBytes(t, data, snapshotMagic)
	if res.gen != 7 || !res.ended || res.count != 3 || res.records != 3 || res.torn || res.corrupt != nil || res.end != int64(len(data)) {
		t.Errorf("scan = %+v", res)
	}
	if strings.Join(aors, " ") != "sip:u0@example.com sip:u1@example.com sip:u2@example.com" {
		t.Errorf("AORs %v", aors)
	}
	// The same bytes are no journal.
	if res, _ := scanBytes(t, data, journalMagic); res.corrupt == nil || res.corrupt.Offset != 0 {
		t.Errorf("snapshot read as a journal: %+v", res)
	}
}

// TestScanTornTail cuts a journal at every offset of its last record, and
// fills the rest of that record with zeros (a file extended before its
// data reached the disk) or with other bytes: each is a torn tail, and the
// records before it are read.
func TestScanTornTail(t *testing.T) {
	ss := states(t, 3)
	data, offs := encodeFile(t, journalMagic, 1, ss, false)
	last := offs[2]
	for cut := last; cut < len(data); cut++ {
		for _, fill := range []string{"cut", "zeros", "garbage"} {
			torn := bytes.Clone(data[:cut])
			switch fill {
			case "zeros":
				torn = append(torn, make([]byte, len(data)-cut)...)
			case "garbage":
				torn = append(torn, bytes.Repeat([]byte{0xa5}, len(data)-cut)...)
			}
			if fill == "garbage" && cut < last+frameLen {
				// Garbage in the length can make any length: that a
				// crash cannot write (a power loss might), and it is
				// damage unless it runs past the end of the file.
				continue
			}
			if bytes.Equal(torn, data) {
				continue // the fill wrote the record's own bytes (its last fields are zeros)
			}
			res, aors := scanBytes(t, torn, journalMagic)
			wantTorn := len(torn) > last // nothing of the record written is no tear
			if res.torn != wantTorn || res.corrupt != nil || res.end != int64(last) || len(aors) != 2 {
				t.Fatalf("cut at %d (%s): torn %v corrupt %v end %d aors %d; want a torn tail at %d after 2 records",
					cut, fill, res.torn, res.corrupt, res.end, len(aors), last)
			}
		}
	}
	// A header cut short, or never written (zeros), is a torn file with
	// nothing in it.
	for cut := range headerLen + 1 {
		for _, b := range [][]byte{data[:cut], make([]byte, cut)} {
			res, aors := scanBytes(t, b, journalMagic)
			if (!res.torn && cut < headerLen) || res.corrupt != nil || len(aors) != 0 {
				t.Errorf("header of %d bytes: %+v", cut, res)
			}
		}
	}
}

// TestScanDamage: a bad checksum, length or header with records after it
// is damage, reported at its offset, and reading stops there.
func TestScanDamage(t *testing.T) {
	ss := states(t, 3)
	data, offs := encodeFile(t, journalMagic, 1, ss, false)
	tests := []struct {
		name   string
		at     int // byte to change
		offset int // where the damage is reported
		reason string
		aors   int
	}{
		{"payload", offs[1] + frameLen + 5, offs[1], "checksum mismatch", 1},
		{"checksum", offs[1] + 5, offs[1], "checksum mismatch", 1},
		{"length", offs[1] + 3, offs[1], "length", 1},
		{"first record", offs[0] + frameLen + 20, offs[0], "checksum mismatch", 0},
		{"header", 10, 0, "header checksum", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := bytes.Clone(data)
			bad[tt.at] ^= 0x40
			res, aors := scanBytes(t, bad, journalMagic)
			if res.corrupt == nil {
				t.Fatalf("no damage reported: %+v", res)
			}
			if res.corrupt.Offset != int64(tt.offset) || !strings.Contains(res.corrupt.Reason, tt.reason) || res.corrupt.Path != "test-file" {
				t.Errorf("damage %v, want at offset %d: %s", res.corrupt, tt.offset, tt.reason)
			}
			if !strings.Contains(res.corrupt.Error(), fmt.Sprintf("test-file is damaged at offset %d", tt.offset)) {
				t.Errorf("error text %q", res.corrupt.Error())
			}
			if len(aors) != tt.aors || res.torn {
				t.Errorf("read %d AORs (torn %v), want %d", len(aors), res.torn, tt.aors)
			}
		})
	}
}

// TestScanBadRecord: a record whose checksum matches but whose body does
// not decode is skipped and reported; reading goes on.
func TestScanBadRecord(t *testing.T) {
	ss := states(t, 2)
	data, _ := encodeFile(t, journalMagic, 1, ss[:1], false)
	mid := len(data)
	for _, body := range []string{"{not json", `{"aor":""}`} {
		data, _ = appendRecord(data, kindAOR, func(b []byte) ([]byte, error) { return append(b, body...), nil })
	}
	data, _ = appendRecord(data, 'Z', func(b []byte) ([]byte, error) { return append(b, "?"...), nil })
	data, _ = appendRecord(data, kindEnd, func(b []byte) ([]byte, error) { return append(b, "short"...), nil })
	tail, offs := encodeFile(t, journalMagic, 1, ss[1:], false)
	data = append(data, tail[offs[0]:]...)
	res, aors := scanBytes(t, data, journalMagic)
	if len(aors) != 2 || res.corrupt != nil || res.torn || len(res.bad) != 4 || res.end != int64(len(data)) {
		t.Fatalf("scan = %+v, aors %v", res, aors)
	}
	if res.bad[0].Offset != int64(mid) || !strings.Contains(res.bad[0].Reason, "undecodable") {
		t.Errorf("first bad record %v, want at %d", res.bad[0], mid)
	}
}

func TestScanSnapshotEnd(t *testing.T) {
	ss := states(t, 2)
	data, offs := encodeFile(t, snapshotMagic, 1, ss, true)
	// Bytes after the end record are damage.
	res, _ := scanBytes(t, append(bytes.Clone(data), data[offs[0]:offs[1]]...), snapshotMagic)
	if res.corrupt == nil || res.corrupt.Offset != int64(len(data)) {
		t.Errorf("record after the end: %+v", res)
	}
	// Without it the snapshot reads as not ended, which load reports.
	res, _ = scanBytes(t, data[:offs[2]], snapshotMagic)
	if res.ended || res.records != 2 || res.corrupt != nil {
		t.Errorf("no end record: %+v", res)
	}
}

func TestScanVersion(t *testing.T) {
	data := appendHeader(nil, journalMagic, 1)
	binary.LittleEndian.PutUint32(data[8:], 99)
	binary.LittleEndian.PutUint32(data[20:], crc32c(data[:20]))
	res, _ := scanBytes(t, data, journalMagic)
	if res.corrupt == nil || !strings.Contains(res.corrupt.Reason, "version 99") {
		t.Errorf("version 99: %+v", res)
	}
}

func TestAppendRecordTooLarge(t *testing.T) {
	b := Binding{AOR: aor, Contact: addr(t, "<sip:a@192.0.2.1>"), Path: []string{strings.Repeat("x", maxRecordBytes)}}
	buf := []byte("keep")
	out, err := appendAOR(buf, aor, []Binding{b})
	if err == nil || string(out) != "keep" {
		t.Errorf("appendAOR of %d bytes: %v, buffer %d bytes", maxRecordBytes, err, len(out))
	}
}
