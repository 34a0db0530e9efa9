package location

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// snapshotVersion is bumped when the file layout changes incompatibly.
const snapshotVersion = 1

// snapshot is the file: a version, when it was written, and the bindings.
type snapshot struct {
	Version  int       `json:"version"`
	Saved    time.Time `json:"saved"`
	Bindings []record  `json:"bindings"`
}

// record is a Binding on disk. The Contact is kept in its wire form, which
// sip.ParseAddress reads back exactly; a flow id is written for the admin's
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
	}
	if r.Addr != "" {
		if b.Source.AddrPort, err = netip.ParseAddrPort(r.Addr); err != nil {
			return Binding{}, fmt.Errorf("source: %w", err)
		}
	}
	return b, nil
}

// snapshotLocked copies the store into a snapshot, sorted by AOR so that
// the file diffs well. The caller holds m.mu.
func (m *Memory) snapshotLocked() snapshot {
	s := snapshot{Version: snapshotVersion, Saved: m.clock.Now().UTC()}
	aors := make([]string, 0, len(m.aors))
	for aor := range m.aors {
		aors = append(aors, aor)
	}
	slices.Sort(aors)
	for _, aor := range aors {
		for i := range m.aors[aor] {
			s.Bindings = append(s.Bindings, newRecord(&m.aors[aor][i]))
		}
	}
	return s
}

// writeSnapshot replaces path atomically: a temporary file in the same
// directory is written and synced, renamed over path, and the directory is
// synced, so a crash leaves either the old file or the new one, never a
// torn one.
func writeSnapshot(path string, s snapshot) (err error) {
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	if _, err = f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync snapshot: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("replace snapshot: %w", err)
	}
	// The rename is durable only once the directory entry is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync data directory: %w", err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("sync data directory: %w", err)
	}
	return nil
}

// loadSnapshot creates dir if needed, removes temporary files a crash left
// behind, and returns the records of the snapshot at path (none if there is
// no snapshot yet).
func loadSnapshot(dir, path string, log *slog.Logger) ([]record, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("location: create data directory: %w", err)
	}
	if stale, _ := filepath.Glob(path + ".tmp-*"); len(stale) > 0 {
		for _, name := range stale {
			os.Remove(name)
		}
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("location: read snapshot: %w", err)
	}
	var s snapshot
	err = json.Unmarshal(data, &s)
	if err == nil && s.Version != snapshotVersion {
		err = fmt.Errorf("unknown version %d", s.Version)
	}
	if err != nil {
		aside := path + ".corrupt"
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("location: snapshot %s is unreadable (%v) and cannot be moved aside: %w", path, err, rerr)
		}
		log.Warn("location: snapshot unreadable, starting empty", "path", path, "moved_to", aside, "err", err)
		return nil, nil
	}
	return s.Bindings, nil
}
