package location

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// journalFile is an open journal: appends, and a sync that makes them
// durable.
type journalFile interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
}

// writeSyncer is a journal file that appends and syncs in one call, which
// saves a system call per batch (osJournal on Linux). Its durability is
// that of Write and Sync: when it returns nil the bytes are on disk.
type writeSyncer interface {
	WriteSync(p []byte) error
}

// batch is the journal records appended since the last write took them:
// one write and one sync for every change in it (group commit).
type batch struct {
	d    *disk
	buf  []byte
	done chan struct{} // closed once the batch is durable or failed
	err  error         // set before done is closed
	// waiters is the callers waiting for the batch while another
	// writes, under m.mu. A batch left with none is written by the
	// token holder before it lets go (see lead).
	waiters int
}

// wait waits until the batch is durable. A nil batch is durable already.
//
// There is no writer goroutine: the caller that finds the journal free
// writes and syncs the batch itself (it becomes the leader, see lead),
// and the callers that arrive while it syncs append to the next batch and
// wait, one of them writing it once the leader is done. One REGISTER at
// a time thus costs no goroutine wake-up and hand-off, and concurrent
// ones still share a sync.
//
// When ctx ends first the change stays in memory and is written all the
// same, by its other waiters or the caller writing now, or by this caller
// if it was the last waiter and the journal is free; the caller only
// stops waiting for it.
func (b *batch) wait(ctx context.Context) error {
	if b == nil {
		return nil
	}
	d := b.d
	for {
		select {
		case <-b.done:
			return b.err
		default:
		}
		d.m.mu.Lock()
		select {
		case d.token <- struct{}{}:
			d.m.mu.Unlock()
			d.lead()
			continue // b was written by now, by this call or before
		default:
		}
		b.waiters++
		d.m.mu.Unlock()
		select {
		case <-b.done:
			return b.err
		case d.token <- struct{}{}:
			// The writer is done and b is not written: b is the
			// current batch, which lead takes.
			d.m.mu.Lock()
			b.waiters--
			d.m.mu.Unlock()
			d.lead()
		case <-ctx.Done():
			d.abandon(b)
			return fmt.Errorf("location: waiting for the journal: %w", ctx.Err())
		}
	}
}

// abandon is wait's end when its context ends: when b is still to be
// written and nobody else waits for it, it is written now if the journal
// is free, and otherwise by the caller writing now before it lets go.
func (d *disk) abandon(b *batch) {
	d.m.mu.Lock()
	b.waiters--
	if b.waiters > 0 || d.cur != b {
		d.m.mu.Unlock()
		return
	}
	select {
	case d.token <- struct{}{}:
		d.m.mu.Unlock()
		d.lead()
	default:
		d.m.mu.Unlock()
	}
}

// lead is the writer's turn of a caller holding the token: it writes and
// syncs the current batch, then the batches after it that no caller waits
// for (their callers gave up, or have not begun waiting yet), and gives
// the token back. The token is given back under m.mu, where abandon looks
// at it, so that no batch is left with neither waiter nor writer.
func (d *disk) lead() {
	first := true
	var spare []byte
	for {
		d.m.mu.Lock()
		if spare != nil {
			d.spare = spare
		}
		b, gen := d.cur, d.gen
		if b == nil || (!first && b.waiters > 0) {
			<-d.token
			d.m.mu.Unlock()
			return
		}
		d.cur = nil
		d.m.mu.Unlock()
		first = false
		spare = d.write(b, gen)
	}
}

// write writes batch b to the journal of generation gen, wakes its
// waiters and returns its buffer for reuse, nil when too large to keep.
// The caller holds the token.
func (d *disk) write(b *batch, gen uint64) []byte {
	b.err = d.commit(b.buf, gen)
	close(b.done)
	if cap(b.buf) > 1<<20 {
		return nil
	}
	return b.buf[:0]
}

// disk keeps a Memory store's state in its data directory: a snapshot
// (snapshotFile) of generation G and the journals of generations G and up
// (journalName), each holding the records of the changes made after the
// snapshot of its generation was taken. Replaying the journals of G and
// up, in order, over the snapshot gives the state.
//
// A compaction takes the state and moves new records to the journal of
// the next generation at the same instant (under the store's lock), then
// writes the snapshot of that generation and removes the older journals.
// A crash before the new snapshot is in place leaves the old snapshot and
// every journal it needs.
type disk struct {
	m     *Memory
	dir   string
	limit int64
	log   *slog.Logger
	hooks hooks

	// Under m.mu: the generation new records go to, the batch they go
	// to, and a buffer the writer handed back.
	gen   uint64
	cur   *batch
	spare []byte

	// token is held by the one caller writing to the journal (cap 1:
	// a send takes it, a receive gives it back). close takes it for good.
	token    chan struct{}
	compactC chan struct{} // cap 1: the journal is over its limit
	stop     chan struct{} // closed by close
	wg       sync.WaitGroup
	// compacting is set from the writer's request until the compaction
	// it asked for has ended, so that it asks once.
	compacting atomic.Bool

	// snapMu makes snapshots one at a time, so that they reach the disk
	// in the order of their generations.
	snapMu   sync.Mutex
	closed   bool // under snapMu
	snapSize atomic.Int64

	// What Open found and start finishes with.
	aside  []string // damaged files to rename with ".corrupt"
	legacy bool     // a JSON snapshot of an earlier version to remove

	// The token holder's own. resnap is set when a batch could be written
	// neither to the journal nor as a snapshot.
	jf       journalFile
	jfGen    uint64
	jsize    int64
	resnap   bool
	finalErr error

	records, syncs, snapshots, writeErrors atomic.Uint64
	journalBytes                           atomic.Int64
}

// openDisk creates the data directory if needed and reads the state it
// holds, by AOR.
func openDisk(m *Memory, opts Options) (*disk, map[string][]record, error) {
	d := &disk{
		m:        m,
		dir:      opts.Dir,
		limit:    cmp.Or(opts.JournalLimit, DefaultJournalLimit),
		log:      m.log,
		token:    make(chan struct{}, 1),
		compactC: make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if opts.hooks != nil {
		d.hooks = *opts.hooks
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("location: create data directory: %w", err)
	}
	state, err := d.load()
	if err != nil {
		return nil, nil, err
	}
	return d, state, nil
}

// start writes what was loaded as the snapshot of a new generation, so
// that no journal that a crash may have cut short is appended to, sets
// damaged files aside, removes the files the snapshot replaces, and starts
// the compactor.
func (d *disk) start() error {
	gen, err := d.snapshot()
	if err != nil {
		return fmt.Errorf("location: write snapshot: %w", err)
	}
	for _, path := range d.aside {
		if err := os.Rename(path, path+".corrupt"); err != nil {
			d.log.Error("location: cannot set damaged file aside", "path", path, "err", err)
		} else {
			d.log.Warn("location: damaged file set aside", "path", path+".corrupt")
		}
	}
	d.aside = nil
	d.removeBefore(gen)
	if d.legacy {
		os.Remove(filepath.Join(d.dir, legacyFile))
	}
	d.wg.Add(1)
	go d.compactLoop()
	return nil
}

// appendLocked appends the record of aor's durable bindings to the
// current batch and returns the batch. The caller holds m.mu.
func (d *disk) appendLocked(aor string, list []Binding) (*batch, error) {
	b := d.cur
	if b == nil {
		b = &batch{d: d, buf: d.spare, done: make(chan struct{})}
		d.spare = nil
	}
	buf, err := appendBindings(b.buf, aor, list, durable)
	if err != nil {
		return nil, err
	}
	b.buf = buf
	d.cur = b
	d.records.Add(1)
	return b, nil
}

// commit appends buf to the journal of generation gen and syncs it. When
// the journal cannot be written it writes a snapshot instead, which holds
// buf's changes since they are in memory, and reports success if that
// worked.
func (d *disk) commit(buf []byte, gen uint64) error {
	if d.resnap {
		// An earlier batch was lost: only a snapshot brings the disk
		// back to what is in memory, this batch included.
		if err := d.compact(); err != nil {
			return fmt.Errorf("location: no journal since an earlier failure, and snapshot: %w", err)
		}
		d.resnap = false
		return nil
	}
	if d.jf != nil && d.jfGen != gen {
		if err := d.jf.Close(); err != nil {
			d.log.Warn("location: closing a finished journal failed", "gen", d.jfGen, "err", err)
		}
		d.jf = nil
	}
	if d.jf == nil {
		if err := d.createJournal(gen); err != nil {
			return d.rescue(err)
		}
	}
	if len(buf) == 0 {
		return nil
	}
	if ws, ok := d.jf.(writeSyncer); ok && d.hooks.beforeSync == nil {
		if err := ws.WriteSync(buf); err != nil {
			return d.rescue(err)
		}
	} else {
		if _, err := d.jf.Write(buf); err != nil {
			return d.rescue(err)
		}
		if d.hooks.beforeSync != nil {
			d.hooks.beforeSync()
		}
		if err := d.jf.Sync(); err != nil {
			return d.rescue(err)
		}
	}
	d.syncs.Add(1)
	d.jsize += int64(len(buf))
	d.journalBytes.Store(d.jsize)
	if d.jsize >= max(d.limit, d.snapSize.Load()) && d.compacting.CompareAndSwap(false, true) {
		d.compactC <- struct{}{} // cap 1, and only one request is out
	}
	return nil
}

// createJournal creates the journal of generation gen with its header,
// durable with its directory entry before any record goes in.
func (d *disk) createJournal(gen uint64) error {
	path := filepath.Join(d.dir, journalName(gen))
	create := d.hooks.create
	if create == nil {
		create = createJournalFile
	}
	f, err := create(path)
	if err != nil {
		return fmt.Errorf("create journal: %w", err)
	}
	hdr := appendHeader(nil, journalMagic, gen)
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		return fmt.Errorf("write journal %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync journal %s: %w", path, err)
	}
	if err := syncDir(d.dir); err != nil {
		f.Close()
		return err
	}
	d.jf, d.jfGen, d.jsize = f, gen, int64(len(hdr))
	d.journalBytes.Store(d.jsize)
	return nil
}

// rescue is the writer's answer to a journal that failed: it never
// appends to that journal again, since what reached it is unknown, and
// writes a snapshot, of a new generation, of everything in memory.
func (d *disk) rescue(cause error) error {
	d.writeErrors.Add(1)
	if d.jf != nil {
		d.jf.Close()
		d.jf = nil
	}
	d.log.Error("location: journal write failed, writing a snapshot instead", "dir", d.dir, "err", cause)
	if err := d.compact(); err != nil {
		d.resnap = true
		return fmt.Errorf("location: journal: %w; snapshot: %w", cause, err)
	}
	return nil
}

// compactLoop is the compactor: it compacts when the writer asks.
func (d *disk) compactLoop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.compactC:
			d.compact()
			d.compacting.Store(false)
		case <-d.stop:
			return
		}
	}
}

// compact writes a snapshot of a new generation and removes the journals
// of the generations before it.
func (d *disk) compact() error {
	gen, err := d.snapshot()
	if err != nil {
		d.log.Error("location: writing a snapshot failed; the journal is kept", "dir", d.dir, "err", err)
		return err
	}
	d.removeBefore(gen)
	d.step("journals removed")
	return nil
}

var errDiskClosed = errors.New("location: store closed")

// snapshot takes the state, moving new records to a new generation at the
// same instant, and writes it as the snapshot of that generation.
func (d *disk) snapshot() (uint64, error) {
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	if d.closed {
		return 0, errDiskClosed
	}
	now := d.m.clock.Now()
	d.m.mu.Lock()
	d.gen++
	gen := d.gen
	// The lists are never changed in place: a copy of the map is a copy
	// of the state.
	aors := maps.Clone(d.m.aors)
	d.m.mu.Unlock()
	d.step("state taken")
	size, err := writeSnapshot(d.dir, gen, aors, now)
	if err != nil {
		d.writeErrors.Add(1)
		return gen, err
	}
	d.snapSize.Store(size)
	d.snapshots.Add(1)
	d.step("snapshot written")
	return gen, nil
}

// removeBefore removes the journals of generations before gen, which the
// snapshot of gen holds.
func (d *disk) removeBefore(gen uint64) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		d.log.Warn("location: cannot list the data directory", "dir", d.dir, "err", err)
		return
	}
	for _, e := range entries {
		if g, ok := parseJournalName(e.Name()); ok && g < gen {
			if err := os.Remove(filepath.Join(d.dir, e.Name())); err != nil {
				d.log.Warn("location: cannot remove an old journal", "path", e.Name(), "err", err)
			}
		}
	}
}

func (d *disk) step(name string) {
	if d.hooks.step != nil {
		d.hooks.step(name)
	}
}

// close waits for the write under way, writes what is left, closes the
// journal and stops the compactor, and returns the last write's error.
// It keeps the token: nothing is written after.
func (d *disk) close() error {
	close(d.stop)
	d.token <- struct{}{}
	d.m.mu.Lock()
	b, gen := d.cur, d.gen
	d.cur = nil
	d.m.mu.Unlock()
	if b != nil {
		d.write(b, gen)
		d.finalErr = b.err
	}
	if d.jf != nil {
		if err := d.jf.Close(); err != nil && d.finalErr == nil {
			d.finalErr = fmt.Errorf("location: close journal: %w", err)
		}
		d.jf = nil
	}
	d.wg.Wait()
	d.snapMu.Lock() // a compaction called by Compact ends first
	d.closed = true
	d.snapMu.Unlock()
	return d.finalErr
}
