package location

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// appendAORJSON appends a kindAOR record, as versions before the binary
// record wrote it.
func appendAORJSON(t testing.TB, dst []byte, aor string, list []Binding) []byte {
	t.Helper()
	dst, err := appendRecord(dst, kindAOR, func(b []byte) ([]byte, error) {
		s := aorState{AOR: aor, Bindings: make([]record, len(list))}
		for i := range list {
			s.Bindings[i] = newRecord(&list[i])
		}
		body, err := json.Marshal(s)
		return append(b, body...), err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// oddBindings are bindings with every field set, and the edges of each:
// a Contact over 127 bytes (its length takes two bytes), IPv6 with a zone,
// no source, the zero time, Path values, outbound, a node.
func oddBindings(t testing.TB) []Binding {
	long := "<sip:" + strings.Repeat("x", 150) + "@192.0.2.7:5060;transport=udp>;+sip.instance=\"<urn:uuid:1>\";reg-id=3;q=0.5;foo"
	return []Binding{
		{
			AOR: aor, Contact: addr(t, `"Alice \"A\"" `+long), Expires: start.Add(time.Hour + 7), Q: 500,
			CallID: "c1@h", CSeq: 1<<32 - 1, Instance: "<urn:uuid:1>", RegID: 3,
			Path:   []string{"<sip:e1.example.com;lr;ob>", "<sip:e2.example.com;lr>"},
			Source: sip.Addr{Transport: sip.TLS, AddrPort: netip.MustParseAddrPort("[fe80::1%eth0]:5061"), Flow: 1 << 40},
			// Received at the zero time: a Put that set none.
			UserAgent: strings.Repeat("ü", 100), Node: "sip:10.0.0.2:5060;transport=tcp",
		},
		{
			AOR: aor, Contact: addr(t, "<sip:alice@192.0.2.1>"), Expires: start.Add(-time.Hour), Q: 0,
			CallID: "", CSeq: 0, Received: start.Add(123456789),
		},
		{
			AOR: aor, Contact: addr(t, "<sips:alice@[2001:db8::1]:5061>"), Expires: start.Add(time.Minute), Q: 1000,
			CallID: "c3", CSeq: 7, Source: udpFrom("[2001:db8::9]:5062"), Received: start,
		},
	}
}

// TestBindingsRoundTrip: a binary record reads back every field of every
// binding, as a restart sees it.
func TestBindingsRoundTrip(t *testing.T) {
	list := oddBindings(t)
	buf, err := appendAOR(nil, aor, list)
	if err != nil {
		t.Fatal(err)
	}
	payload := buf[frameLen:]
	if payload[0] != kindBindings {
		t.Fatalf("kind %q", payload[0])
	}
	s, err := decodeBindings(payload[1:])
	if err != nil {
		t.Fatal(err)
	}
	if s.AOR != aor || len(s.Bindings) != len(list) {
		t.Fatalf("decoded %q with %d bindings", s.AOR, len(s.Bindings))
	}
	for i, r := range s.Bindings {
		got, err := r.binding()
		if err != nil {
			t.Fatalf("binding %d: %v", i, err)
		}
		if !equalBinding(&got, &list[i]) {
			t.Errorf("binding %d:\n got %+v\nwant %+v", i, got, list[i])
		}
	}
	// The zero time stays the zero time.
	if r := s.Bindings[0]; !r.Received.IsZero() {
		t.Errorf("zero Received read back as %v", r.Received)
	}
	// An AOR without bindings: its removal.
	buf, _ = appendAOR(nil, aor, nil)
	if s, err := decodeBindings(buf[frameLen+1:]); err != nil || s.AOR != aor || len(s.Bindings) != 0 {
		t.Errorf("removal: %+v, %v", s, err)
	}
	// The journal's writer leaves out what is not durable.
	ws := Binding{AOR: aor, Contact: addr(t, "<sip:x@h.invalid;transport=ws>"), Expires: start.Add(time.Hour), Source: wsFlow(1)}
	buf, _ = appendBindings(nil, aor, []Binding{ws, list[2]}, durable)
	if s, err := decodeBindings(buf[frameLen+1:]); err != nil || len(s.Bindings) != 1 || s.Bindings[0].CallID != "c3" {
		t.Errorf("durable only: %+v, %v", s, err)
	}
}

// TestBindingsDecodeRefuses: a binary record cut short anywhere, with
// bytes left over, or with a number out of its range is refused with an
// error that names the field and the offset, and allocates nothing for
// a count the bytes cannot hold.
func TestBindingsDecodeRefuses(t *testing.T) {
	buf, err := appendAOR(nil, aor, oddBindings(t))
	if err != nil {
		t.Fatal(err)
	}
	body := buf[frameLen+1:]
	for n := range len(body) {
		_, err := decodeBindings(body[:n])
		if !errors.Is(err, errTruncated) || !strings.Contains(err.Error(), "at byte") {
			t.Fatalf("cut to %d of %d bytes: %v", n, len(body), err)
		}
	}
	if _, err := decodeBindings(append(body[:len(body):len(body)], 0)); err == nil || !strings.Contains(err.Error(), "1 bytes after the last binding") {
		t.Errorf("a byte left over: %v", err)
	}

	// one decodes a record of one binding whose fields fill writes; a
	// nil fill writes the whole body.
	one := func(t *testing.T, prefix bool, fill func(b []byte) []byte) error {
		t.Helper()
		var b []byte
		if prefix {
			b = appendString(nil, aor)
			b = binary.AppendUvarint(b, 1)
		}
		_, err := decodeBindings(fill(b))
		return err
	}
	str := func(b []byte, s string) []byte { return appendString(b, s) }
	head := func(b []byte) []byte { // contact, expires
		b = str(b, "<sip:a@192.0.2.1>")
		return appendTime(b, start)
	}
	for _, tc := range []struct {
		name, want string
		fill       func(b []byte) []byte
	}{
		{"count", "count at byte", func([]byte) []byte {
			b := appendString(nil, aor)
			return binary.AppendUvarint(b, 1<<60)
		}},
		{"nanoseconds", "expires at byte", func(b []byte) []byte {
			b = str(b, "<sip:a@192.0.2.1>")
			b = binary.AppendVarint(b, 1)
			b = binary.AppendUvarint(b, 1e9)
			return append(b, make([]byte, 40)...)
		}},
		{"q", "q at byte", func(b []byte) []byte {
			b = binary.AppendVarint(head(b), 1<<40)
			return append(b, make([]byte, 40)...)
		}},
		{"cseq", "cseq at byte", func(b []byte) []byte {
			b = binary.AppendVarint(head(b), 1000)
			b = str(b, "c")
			b = binary.AppendUvarint(b, 1<<32)
			return append(b, make([]byte, 40)...)
		}},
		{"path count", "path count at byte", func(b []byte) []byte {
			b = binary.AppendVarint(head(b), 1000)
			b = str(b, "c")
			b = binary.AppendUvarint(b, 1)
			b = str(b, "")
			b = binary.AppendVarint(b, 0)
			b = binary.AppendUvarint(b, 1<<50)
			return append(b, make([]byte, 40)...)
		}},
		{"source", "source at byte", func(b []byte) []byte {
			b = binary.AppendVarint(head(b), 1000)
			b = str(b, "c")
			b = binary.AppendUvarint(b, 1)
			b = str(b, "")
			b = binary.AppendVarint(b, 0)
			b = binary.AppendUvarint(b, 0)
			b = str(b, "UDP")
			b = str(b, "\x05\x01\x02") // no address has 3 bytes
			return append(b, make([]byte, 40)...)
		}},
		{"overlong varint", "overflows 64 bits", func(b []byte) []byte {
			b = str(b, "<sip:a@192.0.2.1>")
			return append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := one(t, tc.name != "count", tc.fill)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want an error with %q", err, tc.want)
			}
		})
	}
	// A huge count costs nothing: it is refused before any allocation.
	b := appendString(nil, aor)
	b = binary.AppendUvarint(b, 1<<40)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		decodeBindings(b)
	}
	runtime.ReadMemStats(&after)
	if n := (after.TotalAlloc - before.TotalAlloc) / 100; n > 1024 {
		t.Errorf("%d bytes allocated for a count of 2^40", n)
	}
}

// TestBadBinaryRecordSkipped: a binary record whose checksum matches but
// whose body does not decode is reported with its offset and skipped;
// the records around it are read.
func TestBadBinaryRecordSkipped(t *testing.T) {
	ss := states(t, 3)
	data, offs := encodeFile(t, journalMagic, 1, ss, false)
	// Rebuild the middle record with a body cut by 3 bytes, framed right.
	mid := data[offs[1]+frameLen : offs[2]]
	bad, _ := appendRecord(nil, kindBindings, func(b []byte) ([]byte, error) { return append(b, mid[1:len(mid)-3]...), nil })
	file := append(append(append([]byte(nil), data[:offs[1]]...), bad...), data[offs[2]:]...)
	res, aors := scanBytes(t, file, journalMagic)
	if res.corrupt != nil || res.torn || len(res.bad) != 1 || len(aors) != 2 || res.end != int64(len(file)) {
		t.Fatalf("scan = %+v, AORs %v", res, aors)
	}
	if e := res.bad[0]; e.Offset != int64(offs[1]) || !strings.Contains(e.Error(), "undecodable record") || !strings.Contains(e.Error(), "record ends early") {
		t.Errorf("reported %v", e)
	}
}

// TestLoadJSONRecords: a data directory that a version before the binary
// record left (a snapshot and a journal of JSON records) loads whole, and
// the snapshot written at Open holds binary records only.
func TestLoadJSONRecords(t *testing.T) {
	dir := t.TempDir()
	c := clock.NewFake(start)
	a, b := phone(t, c, "a", 1), phone(t, c, "b", 2)
	b.Path, b.UserAgent = []string{"<sip:edge.example.com;lr>"}, "Desk/1"
	snap := appendHeader(nil, snapshotMagic, 3)
	snap = appendAORJSON(t, snap, a.AOR, []Binding{a})
	snap = appendAORJSON(t, snap, b.AOR, []Binding{b})
	snap = appendEnd(snap, 2)
	b2 := b
	b2.CSeq, b2.Expires = 9, b.Expires.Add(time.Minute)
	jnl := appendHeader(nil, journalMagic, 3)
	jnl = appendAORJSON(t, jnl, b.AOR, []Binding{b2})
	jnl = appendAORJSON(t, jnl, a.AOR, nil)
	if err := os.WriteFile(filepath.Join(dir, SnapshotName), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, journalName(3)), jnl, 0o600); err != nil {
		t.Fatal(err)
	}

	m, logs := reopen(t, dir, c)
	got := dump(t, m)
	want := fmt.Sprintf("sip:b@example.com <sip:b@192.0.2.2:5060> exp=%s q=1000 call-b/9 inst= reg=0 path=[<sip:edge.example.com;lr>] src=UDP/192.0.2.2:5060/0 rcv=%s ua=\"Desk/1\"",
		b2.Expires.UTC().Format(time.RFC3339Nano), start.Format(time.RFC3339Nano))
	if got != want {
		t.Errorf("loaded:\n%s\nwant\n%s", got, want)
	}
	if l := append(logs.lines("WARN"), logs.lines("ERROR")...); len(l) > 0 {
		t.Errorf("logged %v", l)
	}
	kinds := map[byte]int{}
	data, err := os.ReadFile(filepath.Join(dir, SnapshotName))
	if err != nil {
		t.Fatal(err)
	}
	for off := headerLen; off < len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		kinds[data[off+frameLen]]++
		off += frameLen + n
	}
	if kinds[kindAOR] != 0 || kinds[kindBindings] != 1 || kinds[kindEnd] != 1 {
		t.Errorf("the new snapshot's records by kind: %v", kinds)
	}
}

// TestBindingsMinimal: a binding with every field empty or zero (its times
// at the Unix epoch) takes minBindingLen bytes, and a record of such
// bindings decodes: the check of the count against the bytes left refuses
// no record that holds what it counts.
func TestBindingsMinimal(t *testing.T) {
	epoch := time.Unix(0, 0)
	x := Binding{Expires: epoch, Received: epoch}
	b := appendBinding(nil, &x)
	if n := len(b) - len(x.Contact.AppendTo(nil)); n != minBindingLen {
		t.Errorf("an empty binding takes %d bytes besides its Contact's text, minBindingLen is %d", n, minBindingLen)
	}
	body := appendString(nil, aor)
	body = binary.AppendUvarint(body, 3)
	for range 3 {
		body = appendString(body, "")
		body = append(body, make([]byte, minBindingLen-1)...)
	}
	if s, err := decodeBindings(body); err != nil || len(s.Bindings) != 3 {
		t.Errorf("3 minimal bindings: %d, %v", len(s.Bindings), err)
	}
}
