package location

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// A kindBindings record holds the whole state of one address of record in
// a compact binary form, written in place into the journal's buffer with
// no allocation (JSON, which kindAOR records hold and versions before it
// wrote, cost about a tenth of a REGISTER's CPU). Its body is
//
//	aor      string
//	count    uvarint, the bindings that follow
//	binding  count times:
//	  contact   string, the Contact in its wire form (sip.ParseAddress reads it back)
//	  expires   time
//	  q         varint
//	  call-id   string
//	  cseq      uvarint (32 bits)
//	  instance  string
//	  reg-id    varint
//	  path      uvarint count, then that many strings
//	  transport string
//	  addr      string: the source address as netip.AddrPort's binary form, empty when none
//	  flow      uvarint
//	  received  time
//	  agent     string (User-Agent)
//	  node      string
//
// where a string is its length as a uvarint and then its bytes, and a time
// is its Unix seconds as a varint and then its nanoseconds as a uvarint
// (the zero time.Time is -62135596800 s). Nothing else follows the last
// binding. The decoder refuses a record that ends early, has bytes left
// over, or holds a number out of its range, naming the field.
const kindBindings = 'B'

// minBindingLen is the fewest bytes one encoded binding takes: a byte for
// each of its 12 strings, counts and numbers, and two for each of its
// two times.
const minBindingLen = 16

// errTruncated means a binary record ended in the middle of a field.
var errTruncated = errors.New("record ends early")

// appendBindings appends the record of aor's bindings, those of list for
// which keep reports true, to dst (see kindBindings).
func appendBindings(dst []byte, aor string, list []Binding, keep func(*Binding) bool) ([]byte, error) {
	return appendRecord(dst, kindBindings, func(b []byte) ([]byte, error) {
		n := 0
		for i := range list {
			if keep(&list[i]) {
				n++
			}
		}
		b = appendString(b, aor)
		b = binary.AppendUvarint(b, uint64(n))
		for i := range list {
			if keep(&list[i]) {
				b = appendBinding(b, &list[i])
			}
		}
		return b, nil
	})
}

func keepAll(*Binding) bool { return true }

// appendBinding appends one binding's fields.
func appendBinding(b []byte, x *Binding) []byte {
	start := len(b)
	b = append(b, 0)
	b = endLen(x.Contact.AppendTo(b), start)
	b = appendTime(b, x.Expires)
	b = binary.AppendVarint(b, int64(x.Q))
	b = appendString(b, x.CallID)
	b = binary.AppendUvarint(b, uint64(x.CSeq))
	b = appendString(b, x.Instance)
	b = binary.AppendVarint(b, int64(x.RegID))
	b = binary.AppendUvarint(b, uint64(len(x.Path)))
	for _, p := range x.Path {
		b = appendString(b, p)
	}
	b = appendString(b, x.Source.Transport)
	if ap := x.Source.AddrPort; ap.IsValid() {
		start := len(b)
		b = append(b, 0)
		b, _ = ap.Addr().AppendBinary(b) // never fails
		b = endLen(binary.LittleEndian.AppendUint16(b, ap.Port()), start)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, x.Source.Flow)
	b = appendTime(b, x.Received)
	b = appendString(b, x.UserAgent)
	return appendString(b, x.Node)
}

// endLen sets the length of a field written in place after the byte
// reserved for it at start: one byte is enough below 128 bytes, and the
// field is moved along when its length needs more.
func endLen(b []byte, start int) []byte {
	n := len(b) - start - 1
	if n < 0x80 {
		b[start] = byte(n)
		return b
	}
	var lb [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(lb[:], uint64(n))
	b = append(b, lb[1:k]...)
	copy(b[start+k:], b[start+1:start+1+n])
	copy(b[start:], lb[:k])
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// recordReader reads the fields of a binary record, remembering the first
// fault; after one every read returns a zero value.
type recordReader struct {
	b   []byte
	off int // of b[0] in the record, for errors
	err error
}

func (r *recordReader) fail(field string, err error) {
	if r.err == nil {
		r.err = fmt.Errorf("%s at byte %d of the record: %w", field, r.off, err)
	}
	r.b = nil
}

func (r *recordReader) uvarint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if !r.advance(field, n) {
		return 0
	}
	return v
}

func (r *recordReader) varint(field string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if !r.advance(field, n) {
		return 0
	}
	return v
}

// advance moves past a number of n bytes as binary.Uvarint and Varint
// report it: 0 when the bytes ended, negative when it overflowed.
func (r *recordReader) advance(field string, n int) bool {
	switch {
	case n == 0:
		r.fail(field, errTruncated)
		return false
	case n < 0:
		r.fail(field, errors.New("number overflows 64 bits"))
		return false
	}
	r.b, r.off = r.b[n:], r.off+n
	return true
}

// bytes returns the next length-prefixed field, still in the record.
func (r *recordReader) bytes(field string) []byte {
	n := r.uvarint(field)
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(field, fmt.Errorf("%w: %d bytes announced, %d left", errTruncated, n, len(r.b)))
		return nil
	}
	v := r.b[:n]
	r.b, r.off = r.b[n:], r.off+int(n)
	return v
}

func (r *recordReader) string(field string) string { return string(r.bytes(field)) }

// int reads a varint that must fit in 32 bits.
func (r *recordReader) int(field string) int {
	v := r.varint(field)
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail(field, fmt.Errorf("%d out of range", v))
		return 0
	}
	return int(v)
}

func (r *recordReader) time(field string) time.Time {
	sec := r.varint(field)
	nsec := r.uvarint(field)
	if r.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		r.fail(field, fmt.Errorf("%d nanoseconds", nsec))
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// decodeBindings decodes the body of a kindBindings record. Every record
// it returns has the AOR of the state; the strings are copies.
func decodeBindings(body []byte) (aorState, error) {
	r := &recordReader{b: body, off: 1} // the kind byte is byte 0
	var s aorState
	s.AOR = r.string("aor")
	n := r.uvarint("count")
	if r.err == nil && n > uint64(len(r.b)/minBindingLen) {
		r.fail("count", fmt.Errorf("%w: %d bindings cannot fit in the %d bytes left", errTruncated, n, len(r.b)))
	}
	if r.err != nil {
		return aorState{}, r.err
	}
	if n > 0 {
		s.Bindings = make([]record, 0, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		rec := record{AOR: s.AOR}
		rec.Contact = r.string("contact")
		rec.Expires = r.time("expires")
		rec.Q = r.int("q")
		rec.CallID = r.string("call-id")
		cseq := r.uvarint("cseq")
		if r.err == nil && cseq > math.MaxUint32 {
			r.fail("cseq", fmt.Errorf("%d out of range", cseq))
		}
		rec.CSeq = uint32(cseq)
		rec.Instance = r.string("instance")
		rec.RegID = r.int("reg-id")
		paths := r.uvarint("path count")
		if r.err == nil && paths > uint64(len(r.b)) {
			r.fail("path count", fmt.Errorf("%w: %d values cannot fit in the %d bytes left", errTruncated, paths, len(r.b)))
		}
		if r.err == nil && paths > 0 {
			rec.Path = make([]string, paths)
			for j := range rec.Path {
				rec.Path[j] = r.string("path")
			}
		}
		rec.Transport = r.string("transport")
		if raw := r.bytes("source"); len(raw) > 0 {
			var ip netip.Addr
			if len(raw) < 2 {
				r.fail("source", fmt.Errorf("%d bytes", len(raw)))
			} else if err := ip.UnmarshalBinary(raw[:len(raw)-2]); err != nil || !ip.IsValid() {
				r.fail("source", fmt.Errorf("not an address: %x", raw))
			} else {
				rec.Addr = netip.AddrPortFrom(ip, binary.LittleEndian.Uint16(raw[len(raw)-2:])).String()
			}
		}
		rec.Flow = r.uvarint("flow")
		rec.Received = r.time("received")
		rec.UserAgent = r.string("user-agent")
		rec.Node = r.string("node")
		s.Bindings = append(s.Bindings, rec)
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("end", fmt.Errorf("%d bytes after the last binding", len(r.b)))
	}
	if r.err != nil {
		return aorState{}, r.err
	}
	return s, nil
}
