package location

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The files of a Memory store share one framing. A file starts with a
// header:
//
//	magic    8 bytes  "SBLOCJNL" (journal) or "SBLOCSNP" (snapshot)
//	version  4 bytes  little-endian, formatVersion
//	gen      8 bytes  little-endian generation (see Memory)
//	crc      4 bytes  CRC-32C of the 20 bytes before
//
// and goes on with records:
//
//	length   4 bytes  little-endian length of the payload, 1..maxRecord
//	crc      4 bytes  CRC-32C of the length bytes and the payload
//	payload  length bytes: a kind byte, then its body
//
// A kindBindings record holds the whole state of one address of record
// in a binary form (see kindBindings; no bindings: the AOR has none), so
// replaying records is "last one wins" per AOR and needs no other rule of
// the store. A kindAOR record holds the same as JSON ({"aor":...,
// "bindings":[...]}): versions before the binary record wrote it, and it
// is still read, so that their files load; the snapshot written at Open
// then holds binary records only. A snapshot ends with one kindEnd record whose body is the
// count of its kindAOR records, little-endian in 8 bytes: a snapshot
// without it was cut short.
//
// The length and checksum tell a record cut short by a crash (a torn tail)
// from damage: see scan.
const (
	headerLen      = 24
	frameLen       = 8
	formatVersion  = 1
	journalMagic   = "SBLOCJNL"
	snapshotMagic  = "SBLOCSNP"
	kindAOR        = 'A'
	kindEnd        = 'E'
	endBodyLen     = 8
	maxRecordBytes = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// aorState is the payload of a kindAOR record.
type aorState struct {
	AOR      string   `json:"aor"`
	Bindings []record `json:"bindings"`
}

// errRecordTooLarge means an AOR's bindings do not fit in one record.
var errRecordTooLarge = errors.New("bindings of the address of record too large to store")

// appendHeader appends a file header to dst.
func appendHeader(dst []byte, magic string, gen uint64) []byte {
	start := len(dst)
	dst = append(dst, magic...)
	dst = binary.LittleEndian.AppendUint32(dst, formatVersion)
	dst = binary.LittleEndian.AppendUint64(dst, gen)
	return binary.LittleEndian.AppendUint32(dst, crc32c(dst[start:]))
}

// appendRecord appends a framed record of kind with body to dst. body is
// appended in place by fill, so that the payload needs no copy.
func appendRecord(dst []byte, kind byte, fill func([]byte) ([]byte, error)) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, kind)
	dst, err := fill(dst)
	if err != nil {
		return dst[:start], err
	}
	n := len(dst) - start - frameLen
	if n > maxRecordBytes {
		return dst[:start], fmt.Errorf("%w: %d bytes", errRecordTooLarge, n)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(n))
	crc := crc32.Update(crc32c(dst[start:start+4]), castagnoli, dst[start+frameLen:])
	binary.LittleEndian.PutUint32(dst[start+4:], crc)
	return dst, nil
}

// appendAOR appends the record of aor's bindings to dst.
func appendAOR(dst []byte, aor string, list []Binding) ([]byte, error) {
	return appendBindings(dst, aor, list, keepAll)
}

// appendEnd appends a snapshot's end record, counting n AOR records.
func appendEnd(dst []byte, n uint64) []byte {
	dst, _ = appendRecord(dst, kindEnd, func(b []byte) ([]byte, error) {
		return binary.LittleEndian.AppendUint64(b, n), nil
	})
	return dst
}

// A CorruptError reports bytes of a location file that are neither a
// record nor a torn tail: damage, not a crash.
type CorruptError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("location file %s is damaged at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// scanResult is what scan read from a file.
type scanResult struct {
	gen uint64
	// end is the offset just past the last whole record.
	end int64
	// torn is set when the bytes from end on are a torn tail: a record,
	// or the header, whose write a crash cut short.
	torn bool
	// ended is set when an end record was read; count is its count.
	ended bool
	count uint64
	// records counts the AOR records read, skipped those that could not
	// be decoded (each is in bad).
	records int
	bad     []*CorruptError
	// corrupt is set when reading stopped at damage; end is then where.
	corrupt *CorruptError
}

// scan reads a file of size bytes from r that starts with magic, calling
// fn for each AOR record in order. It never fails on the bytes: what it
// could not read is described in the result. It fails only when r does.
//
// A frame that is incomplete at the end of the file, or whose checksum
// does not match while nothing but zeros (or nothing) follows it, is a
// torn tail: a crash stopped the write, or the file system extended the
// file before the data reached the disk. Any other mismatch is damage:
// reading stops there, since no length after it can be trusted. A record
// whose checksum matches but whose body does not decode is skipped and
// reported; its framing is sound, so reading goes on.
func scan(r io.Reader, size int64, path, magic string, fn func(aorState)) (scanResult, error) {
	var res scanResult
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	damaged := func(reason string, args ...any) *CorruptError {
		return &CorruptError{Path: path, Offset: off, Reason: fmt.Sprintf(reason, args...)}
	}
	// restZero reports whether the n bytes after the ones consumed so
	// far are all zero.
	restZero := func(n int64) (bool, error) {
		var buf [4096]byte
		for n > 0 {
			k, err := io.ReadFull(br, buf[:min(n, int64(len(buf)))])
			if err != nil {
				return false, fmt.Errorf("read %s: %w", path, err)
			}
			for _, c := range buf[:k] {
				if c != 0 {
					return false, nil
				}
			}
			n -= int64(k)
		}
		return true, nil
	}

	if size < headerLen {
		res.torn = true // the file was made, its header never completed
		return res, nil
	}
	var hdr [headerLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return res, fmt.Errorf("read %s: %w", path, err)
	}
	sum := binary.LittleEndian.Uint32(hdr[20:])
	switch {
	case crc32c(hdr[:20]) != sum:
		zero, err := restZero(size - headerLen)
		if err != nil {
			return res, err
		}
		if zero {
			res.torn = true
			return res, nil
		}
		res.corrupt = damaged("header checksum mismatch")
		return res, nil
	case string(hdr[:8]) != magic:
		res.corrupt = damaged("not a %s file (magic %q)", kindName(magic), hdr[:8])
		return res, nil
	case binary.LittleEndian.Uint32(hdr[8:]) != formatVersion:
		res.corrupt = damaged("format version %d, want %d", binary.LittleEndian.Uint32(hdr[8:]), formatVersion)
		return res, nil
	}
	res.gen = binary.LittleEndian.Uint64(hdr[12:])
	off = headerLen
	res.end = off

	var payload []byte
	for off < size {
		if res.ended {
			res.corrupt = damaged("bytes after the end record")
			return res, nil
		}
		left := size - off
		if left < frameLen {
			res.torn = true
			return res, nil
		}
		var frame [frameLen]byte
		if _, err := io.ReadFull(br, frame[:]); err != nil {
			return res, fmt.Errorf("read %s: %w", path, err)
		}
		n := int64(binary.LittleEndian.Uint32(frame[:4]))
		if n == 0 || n > maxRecordBytes {
			zero, err := restZero(left - frameLen)
			if err != nil {
				return res, err
			}
			if zero && allZero(frame[:]) {
				res.torn = true
				return res, nil
			}
			res.corrupt = damaged("record length %d out of range", n)
			return res, nil
		}
		if frameLen+n > left {
			res.torn = true // the record runs past the end of the file
			return res, nil
		}
		if int64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(br, payload); err != nil {
			return res, fmt.Errorf("read %s: %w", path, err)
		}
		crc := crc32.Update(crc32c(frame[:4]), castagnoli, payload)
		if crc != binary.LittleEndian.Uint32(frame[4:]) {
			zero, err := restZero(left - frameLen - n)
			if err != nil {
				return res, err
			}
			if zero {
				res.torn = true
				return res, nil
			}
			res.corrupt = damaged("record checksum mismatch")
			return res, nil
		}
		switch kind, body := payload[0], payload[1:]; kind {
		case kindAOR, kindBindings:
			s, err := decodeAOR(kind, body)
			switch {
			case err != nil:
				res.bad = append(res.bad, damaged("undecodable record: %v", err))
			case s.AOR == "":
				res.bad = append(res.bad, damaged("record without an address of record"))
			default:
				res.records++
				fn(s)
			}
		case kindEnd:
			if len(body) != endBodyLen {
				res.bad = append(res.bad, damaged("end record of %d bytes", len(body)))
				break
			}
			res.ended = true
			res.count = binary.LittleEndian.Uint64(body)
		default:
			res.bad = append(res.bad, damaged("unknown record kind %#x", kind))
		}
		off += frameLen + n
		res.end = off
	}
	return res, nil
}

// decodeAOR decodes the body of a record of an AOR's state: binary, or
// the JSON of earlier versions.
func decodeAOR(kind byte, body []byte) (aorState, error) {
	if kind == kindBindings {
		return decodeBindings(body)
	}
	var s aorState
	err := json.Unmarshal(body, &s)
	return s, err
}

func allZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}

func kindName(magic string) string {
	if magic == snapshotMagic {
		return "snapshot"
	}
	return "journal"
}
