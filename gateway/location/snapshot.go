package location

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// record is a Binding on disk, in a journal or snapshot record. The
// Contact is kept in its wire form, which sip.ParseAddress reads back
// exactly; a flow id is kept for the reader's
// benefit but means nothing to the next process.
type record struct {
	AOR       string    `json:"aor"`
	Contact   string    `json:"contact"`
	Expires   time.Time `json:"expires"`
	Q         int       `json:"q"`
	CallID    string    `json:"call_id"`
	CSeq      uint32    `json:"cseq"`
	Instance  string    `json:"instance,omitempty"`
	RegID     int       `json:"reg_id,omitempty"`
	Path      []string  `json:"path,omitempty"`
	Transport string    `json:"transport,omitempty"`
	Addr      string    `json:"addr,omitempty"`
	Flow      uint64    `json:"flow,omitempty"`
	Received  time.Time `json:"received"`
	UserAgent string    `json:"user_agent,omitempty"`
	Node      string    `json:"node,omitempty"`
}

func newRecord(b *Binding) record {
	r := record{
		AOR:       b.AOR,
		Contact:   b.Contact.String(),
		Expires:   b.Expires.UTC(),
		Q:         b.Q,
		CallID:    b.CallID,
		CSeq:      b.CSeq,
		Instance:  b.Instance,
		RegID:     b.RegID,
		Path:      b.Path,
		Transport: b.Source.Transport,
		Flow:      b.Source.Flow,
		Received:  b.Received.UTC(),
		UserAgent: b.UserAgent,
		Node:      b.Node,
	}
	if b.Source.AddrPort.IsValid() {
		r.Addr = b.Source.AddrPort.String()
	}
	return r
}

func (r *record) binding() (Binding, error) {
	if r.AOR == "" {
		return Binding{}, errors.New("no aor")
	}
	contact, err := sip.ParseAddress(r.Contact)
	if err != nil {
		return Binding{}, fmt.Errorf("contact: %w", err)
	}
	b := Binding{
		AOR:       r.AOR,
		Contact:   contact,
		Expires:   r.Expires,
		Q:         r.Q,
		CallID:    r.CallID,
		CSeq:      r.CSeq,
		Instance:  r.Instance,
		RegID:     r.RegID,
		Path:      r.Path,
		Source:    sip.Addr{Transport: r.Transport, Flow: r.Flow},
		Received:  r.Received,
		UserAgent: r.UserAgent,
		Node:      r.Node,
	}
	if r.Addr != "" {
		if b.Source.AddrPort, err = netip.ParseAddrPort(r.Addr); err != nil {
			return Binding{}, fmt.Errorf("source: %w", err)
		}
	}
	return b, nil
}

// The files of the data directory.
const (
	// SnapshotName is the snapshot file.
	SnapshotName = "locations.snap"
	// legacyFile is the JSON snapshot that versions before the journal
	// wrote; it is read once if there is no snapshot, then removed.
	legacyFile = "locations.json"
	// journalPrefix and journalSuffix frame a journal's generation, in
	// 16 hexadecimal digits so that names sort as generations do.
	journalPrefix = "locations."
	journalSuffix = ".journal"
)

func journalName(gen uint64) string {
	return fmt.Sprintf("%s%016x%s", journalPrefix, gen, journalSuffix)
}

func parseJournalName(name string) (uint64, bool) {
	hex, ok := strings.CutPrefix(name, journalPrefix)
	if !ok {
		return 0, false
	}
	if hex, ok = strings.CutSuffix(hex, journalSuffix); !ok || len(hex) != 16 {
		return 0, false
	}
	gen, err := strconv.ParseUint(hex, 16, 64)
	return gen, err == nil
}

// writeSnapshot writes the durable, unexpired bindings of aors as the
// snapshot of generation gen, and returns its size. The file replaces the
// snapshot atomically: a temporary file in the same directory is written
// and synced, renamed over the snapshot, and the directory is synced, so a
// crash leaves either the old snapshot or the new one, never a torn one.
func writeSnapshot(dir string, gen uint64, aors map[string][]Binding, now time.Time) (size int64, err error) {
	path := filepath.Join(dir, SnapshotName)
	f, err := os.CreateTemp(dir, SnapshotName+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("create snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return 0, fmt.Errorf("create snapshot: %w", err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	buf := appendHeader(nil, snapshotMagic, gen)
	names := make([]string, 0, len(aors))
	for aor := range aors {
		names = append(names, aor)
	}
	slices.Sort(names)
	var count uint64
	var keep []Binding
	for _, aor := range names {
		keep = keep[:0]
		for _, b := range aors[aor] {
			if b.Expires.After(now) && durable(&b) {
				keep = append(keep, b)
			}
		}
		if len(keep) == 0 {
			continue
		}
		if buf, err = appendAOR(buf, aor, keep); err != nil {
			return 0, err
		}
		count++
		if len(buf) >= 64<<10 {
			if _, err = w.Write(buf); err != nil {
				return 0, fmt.Errorf("write snapshot: %w", err)
			}
			size += int64(len(buf))
			buf = buf[:0]
		}
	}
	buf = appendEnd(buf, count)
	size += int64(len(buf))
	if _, err = w.Write(buf); err != nil {
		return 0, fmt.Errorf("write snapshot: %w", err)
	}
	if err = w.Flush(); err != nil {
		return 0, fmt.Errorf("write snapshot: %w", err)
	}
	if err = f.Sync(); err != nil {
		return 0, fmt.Errorf("sync snapshot: %w", err)
	}
	if err = f.Close(); err != nil {
		return 0, fmt.Errorf("close snapshot: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return 0, fmt.Errorf("replace snapshot: %w", err)
	}
	return size, syncDir(dir)
}

// syncDir makes the entries of dir durable: a rename or a new file is
// durable only once its directory is.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync data directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync data directory: %w", err)
	}
	return nil
}

// osJournal is a journal file on disk; inMemory notes that its file system
// keeps it in memory only (see writeSync).
type osJournal struct {
	f        *os.File
	inMemory bool
}

func createJournalFile(path string) (journalFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return osJournal{f, inMemory(f)}, nil
}

func (j osJournal) Write(p []byte) (int, error) { return j.f.Write(p) }
func (j osJournal) Sync() error                 { return datasync(j.f) }
func (j osJournal) Close() error                { return j.f.Close() }

// WriteSync appends p and makes it durable in one system call where the
// system can (see writeSync), and as Write and Sync otherwise.
func (j osJournal) WriteSync(p []byte) error {
	done, err := writeSync(j.f, p, j.inMemory)
	if done {
		return err
	}
	if _, err := j.f.Write(p); err != nil {
		return err
	}
	return datasync(j.f)
}

// load removes temporary files a crash left behind and reads the state of
// the data directory, by AOR: the snapshot, then the journals of its
// generation and later in order. It notes the highest generation seen, the
// damaged files to set aside and a legacy snapshot to remove. It fails
// only when the directory or a file cannot be read; damage is logged.
func (d *disk) load() (map[string][]record, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("location: read data directory: %w", err)
	}
	state := make(map[string][]record)
	apply := func(s aorState) {
		if len(s.Bindings) == 0 {
			delete(state, s.AOR)
		} else {
			state[s.AOR] = s.Bindings
		}
	}
	type journal struct {
		gen  uint64
		path string
	}
	var journals []journal
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, SnapshotName+".tmp-"), strings.HasPrefix(name, legacyFile+".tmp-"):
			os.Remove(filepath.Join(d.dir, name))
		default:
			if gen, ok := parseJournalName(name); ok {
				journals = append(journals, journal{gen, filepath.Join(d.dir, name)})
			}
		}
	}
	slices.SortFunc(journals, func(a, b journal) int { return cmpUint(a.gen, b.gen) })

	// The snapshot. Without a readable header its generation is unknown,
	// and every journal is replayed: the best that can be done.
	var snapGen uint64
	snapPath := filepath.Join(d.dir, SnapshotName)
	res, found, err := d.readFile(snapPath, snapshotMagic, apply)
	switch {
	case err != nil:
		return nil, err
	case found:
		snapGen = res.gen
		d.gen = res.gen
		problem := ""
		switch {
		case res.corrupt != nil:
			problem = res.corrupt.Reason
		case res.torn, !res.ended:
			problem = "cut short: no end record"
		case res.count != uint64(res.records):
			problem = fmt.Sprintf("the end record counts %d records, %d were read", res.count, res.records)
		}
		if problem != "" {
			d.log.Error("location: snapshot damaged; keeping the bindings read before the damage",
				"path", snapPath, "offset", res.end, "problem", problem, "aors_read", res.records)
			d.aside = append(d.aside, snapPath)
		}
	default:
		if err := d.loadLegacy(apply); err != nil {
			return nil, err
		}
	}

	for _, j := range journals {
		d.gen = max(d.gen, j.gen)
		if j.gen < snapGen {
			continue // the snapshot holds it; a crash came before its removal
		}
		res, _, err := d.readFile(j.path, journalMagic, apply)
		if err != nil {
			return nil, err
		}
		switch {
		case res.corrupt != nil:
			d.log.Error("location: journal damaged; keeping the records read before the damage",
				"path", j.path, "offset", res.corrupt.Offset, "problem", res.corrupt.Reason, "records_read", res.records)
			d.aside = append(d.aside, j.path)
		case res.gen != j.gen && res.end > 0:
			d.log.Error("location: journal holds another generation than its name says; replayed all the same",
				"path", j.path, "gen", res.gen)
		}
		if res.torn {
			size := int64(-1)
			if fi, err := os.Stat(j.path); err == nil {
				size = fi.Size()
			}
			d.log.Warn("location: dropped a record cut short at the end of the journal (a write interrupted by a crash, never acknowledged)",
				"path", j.path, "offset", res.end, "bytes", size-res.end)
		}
	}
	return state, nil
}

// readFile scans the file at path; found is false when it does not exist.
// Records that could not be decoded are logged with their offset.
func (d *disk) readFile(path, magic string, fn func(aorState)) (res scanResult, found bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return res, false, nil
	}
	if err != nil {
		return res, false, fmt.Errorf("location: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, false, fmt.Errorf("location: %w", err)
	}
	res, err = scan(f, fi.Size(), path, magic, fn)
	if err != nil {
		return res, true, fmt.Errorf("location: %w", err)
	}
	for _, bad := range res.bad {
		d.log.Error("location: skipping an unreadable record", "path", bad.Path, "offset", bad.Offset, "problem", bad.Reason)
	}
	return res, true, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// legacySnapshot is the JSON file of versions before the journal.
type legacySnapshot struct {
	Version  int      `json:"version"`
	Bindings []record `json:"bindings"`
}

// loadLegacy reads the JSON snapshot of an earlier version, if there is
// one, into apply. A damaged one is logged and set aside.
func (d *disk) loadLegacy(apply func(aorState)) error {
	path := filepath.Join(d.dir, legacyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("location: %w", err)
	}
	d.legacy = true
	states, err := parseLegacy(data)
	if err != nil {
		d.log.Error("location: earlier snapshot unreadable", "path", path, "err", err)
		d.aside = append(d.aside, path)
		d.legacy = false
		return nil
	}
	for _, s := range states {
		apply(s)
	}
	return nil
}

// parseLegacy decodes a JSON snapshot of an earlier version into the
// bindings of each AOR, in the order of the file.
func parseLegacy(data []byte) ([]aorState, error) {
	var s legacySnapshot
	if err := json.Unmarshal(data, &s); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("at offset %d: %w", syn.Offset, err)
		}
		return nil, err
	}
	if s.Version != 1 {
		return nil, fmt.Errorf("unknown version %d", s.Version)
	}
	var out []aorState
	index := make(map[string]int)
	for _, r := range s.Bindings {
		if r.AOR == "" {
			continue
		}
		i, ok := index[r.AOR]
		if !ok {
			i = len(out)
			index[r.AOR] = i
			out = append(out, aorState{AOR: r.AOR})
		}
		out[i].Bindings = append(out[i].Bindings, r)
	}
	return out, nil
}
