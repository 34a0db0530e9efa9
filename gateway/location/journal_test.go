package location

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// logBuffer collects a store's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the log lines at level ("WARN", "ERROR").
func (l *logBuffer) lines(level string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, "level="+level+" ") {
			out = append(out, line)
		}
	}
	return out
}

// copyDir copies the files of dir into a new directory: what a process
// killed at this instant leaves on disk, as every write it made is in the
// page cache.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			// A compaction removed an old journal after the listing:
			// its snapshot is complete, so the copy is the directory of
			// a crash just after that removal.
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// crashImage is copyDir of m's directory at an instant when no snapshot is
// being written, so that the copy is of one instant. The caller has no
// change of m under way.
func crashImage(t *testing.T, m *Memory) string {
	t.Helper()
	m.disk.snapMu.Lock()
	defer m.disk.snapMu.Unlock()
	return copyDir(t, m.disk.dir)
}

// dump is the bindings of m a restart keeps, one line each, every field.
func dump(t *testing.T, m *Memory) string {
	t.Helper()
	all, err := m.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, b := range all {
		if !durable(&b) {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s %s exp=%s q=%d %s/%d inst=%s reg=%d path=%v src=%s/%s/%d rcv=%s ua=%q",
			b.AOR, b.Contact.String(), b.Expires.UTC().Format(time.RFC3339Nano), b.Q, b.CallID, b.CSeq,
			b.Instance, b.RegID, b.Path, b.Source.Transport, b.Source.AddrPort, b.Source.Flow,
			b.Received.UTC().Format(time.RFC3339Nano), b.UserAgent))
	}
	return strings.Join(lines, "\n")
}

// reopen opens the store kept in dir on c, and returns it with its log.
func reopen(t *testing.T, dir string, c *clock.Fake) (*Memory, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	m, _ := openMem(t, Options{Dir: dir, Clock: c, Logger: logs.logger()})
	return m, logs
}

// phone is a binding of user from a desk phone over UDP: kept across a
// restart.
func phone(t testing.TB, c *clock.Fake, user string, n int) Binding {
	now := c.Now()
	return Binding{
		AOR: "sip:" + user + "@example.com", Contact: addr(t, fmt.Sprintf("<sip:%s@192.0.2.%d:5060>", user, n)),
		Expires: now.Add(time.Hour), Q: 1000, CallID: "call-" + user, CSeq: uint32(n),
		Source: udpFrom(fmt.Sprintf("192.0.2.%d:5060", n)), Received: now,
	}
}

// TestCrashKeepsAcknowledged: every change whose call returned is on disk
// at once, and a store opened on what a crash leaves has every one.
func TestCrashKeepsAcknowledged(t *testing.T) {
	dir := t.TempDir()
	m, c := openMem(t, Options{Dir: dir})
	for i := range 30 {
		b := phone(t, c, fmt.Sprintf("u%d", i%7), i+1)
		b.Path = []string{"<sip:edge.example.com;lr>"}
		b.UserAgent = "Desk/" + fmt.Sprint(i)
		mustPut(t, m, b)
	}
	if err := m.Delete(ctx, phone(t, c, "u1", 9)); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteAOR(ctx, "sip:u2@example.com"); err != nil {
		t.Fatal(err)
	}
	want := dump(t, m)
	image := crashImage(t, m) // no Close: a kill -9
	m2, logs := reopen(t, image, c)
	if got := dump(t, m2); got != want {
		t.Errorf("after a crash:\n%s\nwant\n%s", got, want)
	}
	if strings.Count(want, "\n")+1 != 30-1-4 { // u2 had 4
		t.Errorf("the test lost its own bindings:\n%s", want)
	}
	if l := append(logs.lines("WARN"), logs.lines("ERROR")...); len(l) > 0 {
		t.Errorf("a clean journal was reported: %v", l)
	}
}

// openBlockedAtSync opens a store whose first journal sync blocks: entered
// is closed when the writer reaches it, and free lets it go on (called
// too before Close, which waits for the write).
func openBlockedAtSync(t *testing.T) (m *Memory, c *clock.Fake, entered <-chan struct{}, free func()) {
	in, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h := &hooks{beforeSync: func() {
		once.Do(func() {
			close(in)
			<-release
		})
	}}
	m, c = openMem(t, Options{Dir: t.TempDir(), hooks: h})
	var released sync.Once
	free = func() { released.Do(func() { close(release) }) }
	t.Cleanup(free)
	return m, c, in, free
}

// TestGroupCommit: a Put returns only once its record is synced, and the
// Puts made while the writer syncs share its next sync.
func TestGroupCommit(t *testing.T) {
	m, c, entered, free := openBlockedAtSync(t)
	first := make(chan error, 1)
	go func() { first <- m.Put(ctx, phone(t, c, "first", 1)) }()
	receive(t, entered)
	const n = 20
	done := make(chan error, n)
	for i := range n {
		go func() { done <- m.Put(ctx, phone(t, c, fmt.Sprintf("u%d", i), i+2)) }()
	}
	waitFor(t, "every record appended", func() bool { return m.Stats().Records == n+1 })
	select {
	case err := <-first:
		t.Fatalf("Put returned (%v) before its record was synced", err)
	case err := <-done:
		t.Fatalf("Put returned (%v) before its record was synced", err)
	default:
	}
	free()
	if err := receive(t, first); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := receive(t, done); err != nil {
			t.Fatal(err)
		}
	}
	if s := m.Stats(); s.Syncs != 2 || s.Records != n+1 {
		t.Errorf("%d records in %d syncs, want %d in 2", s.Records, s.Syncs, n+1)
	}
}

// TestAbandonedChangeWritten: a Put that stops waiting when its context
// ends, while another Put writes, is written all the same, by that other
// Put before it returns: nothing is left in memory for a later change or
// Close to write.
func TestAbandonedChangeWritten(t *testing.T) {
	m, c, entered, free := openBlockedAtSync(t)
	first := make(chan error, 1)
	go func() { first <- m.Put(ctx, phone(t, c, "first", 1)) }()
	receive(t, entered)
	gone, cancel := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() { second <- m.Put(gone, phone(t, c, "second", 2)) }()
	waitFor(t, "the second record appended", func() bool { return m.Stats().Records == 2 })
	cancel()
	if err := receive(t, second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put whose context ended: %v, want context.Canceled", err)
	}
	free()
	if err := receive(t, first); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.Syncs != 2 {
		t.Errorf("%d syncs once the first Put returned, want 2", s.Syncs)
	}
	want := dump(t, m)
	m2, _ := reopen(t, crashImage(t, m), c)
	if got := dump(t, m2); got != want || strings.Count(want, "\n") != 1 {
		t.Errorf("after a crash:\n%s\nwant\n%s", got, want)
	}
}

// TestCloseWaitsForWrite: Close called while a Put syncs and another
// waits returns only once the sync is done and the waiting change is
// written, and both are on disk.
func TestCloseWaitsForWrite(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var syncing, overlaps atomic.Int32
	var first atomic.Bool
	h := &hooks{beforeSync: func() {
		if syncing.Add(1) > 1 {
			overlaps.Add(1)
		}
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
		syncing.Add(-1)
	}}
	m, c := openMem(t, Options{Dir: t.TempDir(), hooks: h})
	var released sync.Once
	free := func() { released.Do(func() { close(release) }) }
	t.Cleanup(free)
	puts := make(chan error, 2)
	go func() { puts <- m.Put(ctx, phone(t, c, "first", 1)) }()
	receive(t, entered)
	go func() { puts <- m.Put(ctx, phone(t, c, "second", 2)) }()
	waitFor(t, "the second record appended", func() bool { return m.Stats().Records == 2 })
	want := dump(t, m)
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	waitFor(t, "Close to begin", func() bool {
		m.mu.RLock()
		defer m.mu.RUnlock()
		return m.closed
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) during a sync", err)
	default:
	}
	free()
	if err := receive(t, closed); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := receive(t, puts); err != nil {
			t.Fatal(err)
		}
	}
	if s := m.Stats(); s.Syncs != 2 || overlaps.Load() != 0 {
		t.Errorf("%d syncs, %d of them during another; want 2 and none", s.Syncs, overlaps.Load())
	}
	m2, _ := reopen(t, copyDir(t, m.disk.dir), c)
	if got := dump(t, m2); got != want || strings.Count(want, "\n") != 1 {
		t.Errorf("after Close:\n%s\nwant\n%s", got, want)
	}
}

// TestFlowBindingsNotJournaled: a browser's binding, reachable only over
// its WebSocket, is not kept across a restart, so its registration and
// refreshes cost no write.
func TestFlowBindingsNotJournaled(t *testing.T) {
	m, c := openMem(t, Options{Dir: t.TempDir()})
	browser := binding(t, c, "<sip:x@abc.invalid;transport=ws>", time.Hour)
	browser.Source = wsFlow(3)
	for range 3 {
		browser.CSeq++
		mustPut(t, m, browser)
	}
	if s := m.Stats(); s.Records != 0 || s.Syncs != 0 {
		t.Errorf("browser registration: %d records, %d syncs; want none", s.Records, s.Syncs)
	}
	mustPut(t, m, phone(t, c, "desk", 1))
	if s := m.Stats(); s.Records != 1 || s.Syncs != 1 {
		t.Errorf("phone registration: %d records, %d syncs; want 1 and 1", s.Records, s.Syncs)
	}
	// The phone's AOR gets the browser too: its record holds the phone
	// alone, and the browser's refreshes still write nothing.
	browser.AOR = "sip:desk@example.com"
	mustPut(t, m, browser)
	browser.CSeq++
	mustPut(t, m, browser)
	if s := m.Stats(); s.Records != 1 {
		t.Errorf("browser beside a phone: %d records, want 1", s.Records)
	}
}

// TestTornJournalOnRestart: a record cut short at the end of the journal
// is dropped with a warning naming the file and offset; the store starts
// with the rest, and does not append to the torn file.
func TestTornJournalOnRestart(t *testing.T) {
	dir := t.TempDir()
	m, c := openMem(t, Options{Dir: dir})
	mustPut(t, m, phone(t, c, "a", 1))
	want := dump(t, m)
	mustPut(t, m, phone(t, c, "b", 2))
	image := crashImage(t, m)
	journal := onlyJournal(t, image)
	data, _ := os.ReadFile(journal)
	if err := os.WriteFile(journal, data[:len(data)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	m2, logs := reopen(t, image, c)
	if got := dump(t, m2); got != want {
		t.Errorf("after a torn write:\n%s\nwant\n%s", got, want)
	}
	warn := logs.lines("WARN")
	if len(warn) != 1 || !strings.Contains(warn[0], "cut short") || !strings.Contains(warn[0], "path="+journal) ||
		!strings.Contains(warn[0], "bytes="+fmt.Sprint(len(data)-10-recordStart(t, data, 1))) {
		t.Errorf("warnings %q", warn)
	}
	if e := logs.lines("ERROR"); len(e) > 0 {
		t.Errorf("a torn tail was reported as damage: %v", e)
	}
	if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the torn journal is still there: %v", err)
	}
	// The next change goes to a new journal and survives the next crash.
	mustPut(t, m2, phone(t, c, "c", 3))
	want = dump(t, m2)
	m3, logs := reopen(t, crashImage(t, m2), c)
	if got := dump(t, m3); got != want {
		t.Errorf("second restart:\n%s\nwant\n%s", got, want)
	}
	if l := logs.lines("WARN"); len(l) > 0 {
		t.Errorf("second restart warned: %v", l)
	}
}

// onlyJournal returns the one journal of dir.
func onlyJournal(t *testing.T, dir string) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, "locations.*.journal"))
	if len(matches) != 1 {
		t.Fatalf("journals in %s: %v, want one", dir, matches)
	}
	return matches[0]
}

// recordStart returns the offset of record i (from 0) of a file.
func recordStart(t *testing.T, data []byte, i int) int {
	t.Helper()
	off := headerLen
	for range i {
		if off+frameLen > len(data) {
			t.Fatalf("no record %d", i)
		}
		off += frameLen + int(uint32(data[off])|uint32(data[off+1])<<8|uint32(data[off+2])<<16|uint32(data[off+3])<<24)
	}
	return off
}

// TestDamagedJournalOnRestart: damage before the last record is reported
// as an error with the file and offset; the store starts with what was
// read before it, and the file is kept aside for the operator.
func TestDamagedJournalOnRestart(t *testing.T) {
	dir := t.TempDir()
	m, c := openMem(t, Options{Dir: dir})
	mustPut(t, m, phone(t, c, "a", 1))
	want := dump(t, m)
	mustPut(t, m, phone(t, c, "b", 2))
	mustPut(t, m, phone(t, c, "c", 3))
	image := crashImage(t, m)
	journal := onlyJournal(t, image)
	data, _ := os.ReadFile(journal)
	at := recordStart(t, data, 1)
	data[at+frameLen+12] ^= 0x20
	os.WriteFile(journal, data, 0o600)

	m2, logs := reopen(t, image, c)
	if got := dump(t, m2); got != want {
		t.Errorf("after damage:\n%s\nwant\n%s", got, want)
	}
	errs := logs.lines("ERROR")
	if len(errs) != 1 || !strings.Contains(errs[0], "path="+journal) || !strings.Contains(errs[0], fmt.Sprintf("offset=%d", at)) ||
		!strings.Contains(errs[0], "checksum mismatch") {
		t.Errorf("errors %q, want one naming %s at offset %d", errs, journal, at)
	}
	if aside, err := os.ReadFile(journal + ".corrupt"); err != nil || !bytes.Equal(aside, data) {
		t.Errorf("damaged journal not kept aside: %v", err)
	}
	mustPut(t, m2, phone(t, c, "d", 4)) // and the store works
}

// TestDamagedSnapshotOnRestart: a snapshot cut short or damaged is an
// error naming the file and offset; what was read before stays, with the
// journal after it.
func TestDamagedSnapshotOnRestart(t *testing.T) {
	for _, damage := range []string{"cut", "flip", "header"} {
		t.Run(damage, func(t *testing.T) {
			m, c := openMem(t, Options{Dir: t.TempDir()})
			mustPut(t, m, phone(t, c, "a", 1))
			mustPut(t, m, phone(t, c, "b", 2))
			if err := m.Compact(ctx); err != nil {
				t.Fatal(err)
			}
			mustPut(t, m, phone(t, c, "c", 3)) // in the journal
			image := crashImage(t, m)
			snap := filepath.Join(image, SnapshotName)
			data, _ := os.ReadFile(snap)
			second := recordStart(t, data, 1)
			switch damage {
			case "cut":
				data = data[:recordStart(t, data, 2)] // no end record
			case "flip":
				data[second+frameLen+4] ^= 1
			case "header":
				// Its generation unknown, every journal is replayed.
				data[10] ^= 1
			}
			os.WriteFile(snap, data, 0o600)
			m2, logs := reopen(t, image, c)
			want := []string{"sip:a@192.0.2.1:5060", "", "sip:c@192.0.2.3:5060"}
			switch damage {
			case "cut":
				want[1] = "sip:b@192.0.2.2:5060"
			case "header":
				want[0] = ""
			}
			for i, u := range []string{"a", "b", "c"} {
				if got := contacts(mustGet(t, m2, "sip:"+u+"@example.com")); got != want[i] {
					t.Errorf("%s: %q, want %q", u, got, want[i])
				}
			}
			errs := logs.lines("ERROR")
			offset := map[string]int{"cut": len(data), "flip": second, "header": 0}[damage]
			if len(errs) != 1 || !strings.Contains(errs[0], "path="+snap) || !strings.Contains(errs[0], fmt.Sprintf("offset=%d", offset)) {
				t.Errorf("errors %q, want one naming %s at %d", errs, snap, offset)
			}
			if _, err := os.Stat(snap + ".corrupt"); err != nil {
				t.Errorf("damaged snapshot not kept aside: %v", err)
			}
		})
	}
}

// tapFile is a journal file that shows the test each write before making
// it.
type tapFile struct {
	journalFile
	before func(p []byte)
}

func (f *tapFile) Write(p []byte) (int, error) {
	if f.before != nil {
		f.before(p)
	}
	return f.journalFile.Write(p)
}

// loadOnly reads the state kept in dir into a store, as Open does, but
// writes nothing and starts nothing: for tests that load many images.
func loadOnly(t *testing.T, dir string, c clock.Clock) (*Memory, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	m := newMemory(Options{Clock: c, Logger: logs.logger()})
	_, state, err := openDisk(m, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	m.restore(state)
	return m, logs
}

// TestWriterInterruptedAtEveryOffset restarts on what a journal writer
// killed after each byte count of a record's write leaves: the bindings
// acknowledged before are all there, the interrupted one is not (unless
// all of it reached the file), and the torn record is a warning, not
// damage.
func TestWriterInterruptedAtEveryOffset(t *testing.T) {
	dir := t.TempDir()
	var tap *tapFile
	h := &hooks{create: func(path string) (journalFile, error) {
		f, err := createJournalFile(path)
		if err != nil {
			return nil, err
		}
		tap = &tapFile{journalFile: f}
		return tap, nil
	}}
	m, c := openMem(t, Options{Dir: dir, hooks: h})
	mustPut(t, m, phone(t, c, "a", 1))
	mustPut(t, m, phone(t, c, "b", 2))
	before := dump(t, m)
	// The write to interrupt: the directory as it was just before it,
	// and its bytes.
	var base string
	var record []byte
	tap.before = func(p []byte) {
		base = copyDir(t, dir)
		record = bytes.Clone(p)
	}
	b := phone(t, c, "b", 2)
	b.CSeq, b.UserAgent = 3, "Desk/2"
	mustPut(t, m, b)
	after := dump(t, m)
	if len(record) < 50 {
		t.Fatalf("record of %d bytes", len(record))
	}
	journal := filepath.Base(onlyJournal(t, base))

	for at := 0; at <= len(record); at++ {
		image := copyDir(t, base)
		f, err := os.OpenFile(filepath.Join(image, journal), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(record[:at])
		f.Close()
		m2, logs := loadOnly(t, image, c)
		want := before
		if at == len(record) {
			want = after
		}
		if got := dump(t, m2); got != want {
			t.Fatalf("writer killed after %d of %d bytes:\n%s\nwant\n%s", at, len(record), got, want)
		}
		torn := at > 0 && at < len(record)
		warn := logs.lines("WARN")
		if e := logs.lines("ERROR"); len(e) > 0 || torn != (len(warn) == 1) {
			t.Fatalf("writer killed after %d of %d bytes: errors %v, warnings %v", at, len(record), e, warn)
		}
		os.RemoveAll(image)
	}
}

// TestCrashDuringCompaction takes what a crash leaves at each step of a
// compaction, with a change made while the snapshot is being written: each
// restart has every binding acknowledged by then.
func TestCrashDuringCompaction(t *testing.T) {
	dir := t.TempDir()
	type image struct{ step, dir, want string }
	var images []image
	var m *Memory
	var c *clock.Fake
	h := &hooks{step: func(step string) {
		if m == nil {
			return // Open's own snapshot
		}
		if step == "state taken" && len(images) == 0 {
			// A change after the state was taken goes to the journal of
			// the new generation, while the old snapshot is still the one
			// on disk.
			mustPut(t, m, phone(t, c, "late", 9))
		}
		images = append(images, image{step, copyDir(t, dir), dump(t, m)})
	}}
	c = clock.NewFake(start)
	var err error
	if m, err = Open(Options{Dir: dir, Clock: c, hooks: h}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	for i := range 5 {
		mustPut(t, m, phone(t, c, fmt.Sprintf("u%d", i), i+1))
	}
	if err := m.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	mustPut(t, m, phone(t, c, "after", 10))
	images = append(images, image{"after", crashImage(t, m), dump(t, m)})
	var steps []string
	for _, im := range images {
		steps = append(steps, im.step)
		// A snapshot being written when the crash came leaves its
		// temporary file.
		os.WriteFile(filepath.Join(im.dir, SnapshotName+".tmp-1"), []byte("SBLOCSNP half"), 0o600)
		m2, logs := reopen(t, im.dir, c)
		if got := dump(t, m2); got != im.want {
			t.Errorf("crash at %q:\n%s\nwant\n%s", im.step, got, im.want)
		}
		if l := append(logs.lines("WARN"), logs.lines("ERROR")...); len(l) > 0 {
			t.Errorf("crash at %q: %v", im.step, l)
		}
	}
	if want := []string{"state taken", "snapshot written", "journals removed", "after"}; !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
}

// TestCompactionBoundsJournal: the journal is compacted into a snapshot
// once it passes its limit, old journals go, and the state is unchanged.
func TestCompactionBoundsJournal(t *testing.T) {
	const limit = 1 << 10
	dir := t.TempDir()
	m, c := openMem(t, Options{Dir: dir, JournalLimit: limit})
	for i := range 300 {
		b := phone(t, c, fmt.Sprintf("u%d", i%5), i%5+1)
		b.CSeq = uint32(i + 1)
		mustPut(t, m, b)
		// The compactor runs beside the writer: let it finish before the
		// next change, so that the bound checked is the store's own and
		// not the scheduler's.
		waitFor(t, "the compactor", func() bool { return !m.disk.compacting.Load() })
		if i%10 != 9 {
			continue
		}
		// At most the snapshot and one journal, under the limit but for
		// the record that crossed it.
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
			if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".journal") && fi.Size() >= limit+400 {
				t.Errorf("%s is %d bytes, over the limit", e.Name(), fi.Size())
			}
		}
		if len(names) > 2 {
			t.Errorf("files: %v, want the snapshot and at most one journal", names)
		}
	}
	// 300 records of about 70 bytes: 20 journals' worth.
	if s := m.Stats(); s.Snapshots < 10 {
		t.Errorf("%d snapshots for %d journal records, want ≥ 10", s.Snapshots, s.Records)
	}
	want := dump(t, m)
	image := crashImage(t, m)
	m2, _ := reopen(t, image, c)
	if got := dump(t, m2); got != want {
		t.Errorf("after compactions:\n%s\nwant\n%s", got, want)
	}
}

// TestRestartEquality runs random changes, with compactions, and checks
// that a restart on what a crash leaves at random points holds exactly the
// bindings a restart keeps.
func TestRestartEquality(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	m, c := openMem(t, Options{Dir: dir, JournalLimit: 8 << 10, MaxBindingsPerAOR: 4})
	type check struct {
		dir, want string
		at        time.Time
	}
	var checks []check
	for i := range 600 {
		user := fmt.Sprintf("u%d", rng.IntN(8))
		aor := "sip:" + user + "@example.com"
		switch op := rng.IntN(10); {
		case op < 5:
			b := phone(t, c, user, rng.IntN(4)+1)
			b.CSeq, b.CallID = uint32(i), fmt.Sprintf("call-%d", rng.IntN(3))
			b.Expires = c.Now().Add(time.Duration(rng.IntN(3600)+60) * time.Second)
			switch rng.IntN(4) {
			case 0: // a browser: not kept
				b.Contact = addr(t, fmt.Sprintf("<sip:%s@h%d.invalid;transport=ws>", user, rng.IntN(3)))
				b.Source = wsFlow(uint64(rng.IntN(3) + 1))
			case 1: // a phone over TCP at its public address: kept
				b.Contact = addr(t, fmt.Sprintf("<sip:%s@203.0.113.%d:5060;transport=tcp>", user, rng.IntN(3)+1))
				b.Source = sip.Addr{Transport: sip.TCP, AddrPort: b.Source.AddrPort, Flow: uint64(rng.IntN(3) + 1)}
				b.Path = []string{fmt.Sprintf("<sip:edge%d.example.com;lr>", rng.IntN(2))}
			}
			if err := m.Put(ctx, b); err != nil && !errors.Is(err, ErrTooManyBindings) {
				t.Fatal(err)
			}
		case op < 7:
			if err := m.Delete(ctx, phone(t, c, user, rng.IntN(4)+1)); err != nil {
				t.Fatal(err)
			}
		case op < 8:
			if err := m.DeleteAOR(ctx, aor); err != nil {
				t.Fatal(err)
			}
		case op < 9:
			if _, err := m.DeleteFlow(ctx, wsFlow(uint64(rng.IntN(3)+1))); err != nil {
				t.Fatal(err)
			}
		default:
			c.Advance(time.Duration(rng.IntN(120)) * time.Second)
		}
		if rng.IntN(50) == 0 {
			checks = append(checks, check{crashImage(t, m), dump(t, m), c.Now()})
		}
	}
	checks = append(checks, check{crashImage(t, m), dump(t, m), c.Now()})
	if m.Stats().Snapshots < 3 {
		t.Errorf("only %d snapshots: the test did not compact", m.Stats().Snapshots)
	}
	for i, ch := range checks {
		m2, logs := reopen(t, ch.dir, clock.NewFake(ch.at))
		if got := dump(t, m2); got != ch.want {
			t.Errorf("image %d:\n%s\nwant\n%s", i, got, ch.want)
		}
		if l := append(logs.lines("WARN"), logs.lines("ERROR")...); len(l) > 0 {
			t.Errorf("image %d: %v", i, l)
		}
		m2.Close()
	}
}

// failingFile is a journal whose writes fail.
type failingFile struct{ journalFile }

func (failingFile) Write(p []byte) (int, error) { return 0, io.ErrShortWrite }

// TestJournalWriteFailure: when the journal cannot be written the store
// writes a snapshot instead and the change is durable all the same; when
// that fails too, the call fails.
func TestJournalWriteFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var fail bool
	h := &hooks{create: func(path string) (journalFile, error) {
		f, err := createJournalFile(path)
		if err != nil || !fail {
			return f, err
		}
		return failingFile{f}, nil
	}}
	logs := &logBuffer{}
	m, c := openMem(t, Options{Dir: dir, hooks: h, Logger: logs.logger()})
	fail = true // the journal is made at the first write
	mustPut(t, m, phone(t, c, "a", 1))
	if s := m.Stats(); s.WriteErrors != 1 || s.Snapshots != 2 {
		t.Errorf("%d write errors, %d snapshots; want 1 and 2 (Open's and the rescue's)", s.WriteErrors, s.Snapshots)
	}
	want := dump(t, m)
	m2, _ := reopen(t, crashImage(t, m), c)
	if got := dump(t, m2); got != want {
		t.Errorf("after the rescue:\n%s\nwant\n%s", got, want)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(ctx, phone(t, c, "b", 2)); err == nil {
		t.Error("Put succeeded with neither journal nor snapshot written")
	}
	if len(logs.lines("ERROR")) < 2 {
		t.Errorf("failures not logged:\n%s", logs)
	}
	os.Mkdir(dir, 0o700)
	fail = false
	mustPut(t, m, phone(t, c, "c", 3))
	want = dump(t, m)
	m3, _ := reopen(t, crashImage(t, m), c)
	if got := dump(t, m3); got != want {
		t.Errorf("after recovering:\n%s\nwant\n%s", got, want)
	}
}

// TestPutTooLarge: bindings too large for a record are refused and
// nothing changes.
func TestPutTooLarge(t *testing.T) {
	m, c := openMem(t, Options{Dir: t.TempDir()})
	b := phone(t, c, "a", 1)
	b.Path = []string{strings.Repeat("p", maxRecordBytes)}
	if err := m.Put(ctx, b); !errors.Is(err, errRecordTooLarge) {
		t.Errorf("Put of a %d-byte Path: %v", maxRecordBytes, err)
	}
	if m.Len() != 0 {
		t.Error("the refused binding is stored")
	}
}

func TestJournalName(t *testing.T) {
	for _, gen := range []uint64{0, 1, 0xabc, 1<<64 - 1} {
		if g, ok := parseJournalName(journalName(gen)); !ok || g != gen {
			t.Errorf("%s → %d %v", journalName(gen), g, ok)
		}
	}
	for _, name := range []string{"locations.snap", "locations.12.journal", "locations.000000000000000g.journal", "locations.0000000000000001.journal.corrupt"} {
		if _, ok := parseJournalName(name); ok {
			t.Errorf("%s parsed as a journal", name)
		}
	}
}
