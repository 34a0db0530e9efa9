package location

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// Defaults for zero fields of Options.
const (
	DefaultJournalLimit      = 8 << 20
	DefaultSweepInterval     = 30 * time.Second
	DefaultMaxBindingsPerAOR = 20
)

// Options configure a Memory store. The zero value is a store that lives
// in memory only, with the defaults.
type Options struct {
	// Dir is the data directory the snapshot and the journal are kept in;
	// it is created if missing. Empty means no persistence.
	Dir string
	// JournalLimit is the size in bytes past which the journal is
	// compacted into a new snapshot: the limit, or the size of the last
	// snapshot when that is larger, so that compacting stays cheap
	// against what it saves. The journal goes past it only by what is
	// written while the compaction runs; new records then go to a new
	// journal. Default DefaultJournalLimit.
	JournalLimit int64
	// SweepInterval is how often expired bindings are dropped from memory.
	// They are never returned in between. Default DefaultSweepInterval.
	SweepInterval time.Duration
	// MaxBindingsPerAOR bounds the bindings of one address of record,
	// default DefaultMaxBindingsPerAOR. AORs are accounts, so this bounds
	// the whole store.
	MaxBindingsPerAOR int
	// Clock drives expiry and sweeps; nil means the system clock.
	Clock clock.Clock
	// Logger receives write failures, damaged files and sweeps; nil
	// discards.
	Logger *slog.Logger

	// Set by this package's tests only.
	hooks *hooks
}

// hooks let this package's tests stop the store at chosen points.
type hooks struct {
	// beforeSync is called by the caller writing a batch, after writing
	// it to the journal and before syncing it.
	beforeSync func()
	// step is called at each step of a snapshot where a crash may
	// happen: "state taken", "snapshot written", "journals removed".
	step func(name string)
	// create, when set, replaces the creation of a journal file.
	create func(path string) (journalFile, error)
}

// Memory is a Store served from memory, made durable by a journal and
// snapshots (see the package documentation). Create it with Open and stop
// it with Close.
type Memory struct {
	clock      clock.Clock
	log        *slog.Logger
	sweepEvery time.Duration
	maxPerAOR  int

	mu      sync.RWMutex
	aors    map[string][]Binding        // each list sorted and never changed in place
	flows   map[sip.Addr]map[string]int // reliable source → AOR → bindings from it
	closed  bool
	sweeper clock.Timer

	// Persistence; nil without a data directory.
	disk *disk

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Memory)(nil)

// Open returns a store. With a data directory it loads the snapshot and
// replays the journal found there, then writes what it loaded as a new
// snapshot, so that it never appends to a file a crash may have cut short.
//
// Bindings that have expired, and bindings that need a flow that came
// over a connection (which died with the previous process), are dropped.
// Damage to the files does not keep the gateway from starting:
// registrations are soft state that user agents refresh. Open logs each
// damaged file with the offset of the damage, keeps what it could read
// before it, and renames the file with a ".corrupt" suffix for the
// operator. A record cut short by a crash at the end of the journal is
// dropped with a warning: it was never acknowledged. Open fails when the
// directory cannot be read or the new snapshot cannot be written, since
// no registration could be made durable then.
func Open(opts Options) (*Memory, error) {
	m := newMemory(opts)
	if opts.Dir != "" {
		d, state, err := openDisk(m, opts)
		if err != nil {
			return nil, err
		}
		m.restore(state)
		m.disk = d
		if err := d.start(); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	m.sweeper = m.clock.AfterFunc(m.sweepEvery, m.sweep)
	m.mu.Unlock()
	return m, nil
}

// newMemory returns an empty store, not yet persistent nor swept.
func newMemory(opts Options) *Memory {
	m := &Memory{
		clock:      clock.Or(opts.Clock),
		log:        opts.Logger,
		sweepEvery: cmp.Or(opts.SweepInterval, DefaultSweepInterval),
		maxPerAOR:  cmp.Or(opts.MaxBindingsPerAOR, DefaultMaxBindingsPerAOR),
		aors:       make(map[string][]Binding),
		flows:      make(map[sip.Addr]map[string]int),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m
}

// restore fills the store from the bindings read from disk, by AOR.
func (m *Memory) restore(state map[string][]record) {
	now := m.clock.Now()
	loaded, dropped := 0, 0
	for aor, records := range state {
		list := make([]Binding, 0, len(records))
		for _, r := range records {
			b, err := r.binding()
			switch {
			case err != nil:
				m.log.Warn("location: skipping unreadable binding", "aor", r.AOR, "err", err)
				dropped++
				continue
			case b.AOR != aor:
				m.log.Warn("location: skipping binding filed under another AOR", "aor", aor, "binding_aor", b.AOR)
				dropped++
				continue
			case !b.Expires.After(now):
				dropped++
				continue
			case !durable(&b):
				// Its connection died with the previous process.
				dropped++
				continue
			}
			list = append(list, b)
		}
		sortBindings(list)
		if len(list) > m.maxPerAOR {
			dropped += len(list) - m.maxPerAOR
			list = list[:m.maxPerAOR]
		}
		if len(list) > 0 {
			m.setLocked(aor, list)
			loaded += len(list)
		}
	}
	if loaded+dropped > 0 {
		m.log.Info("location: loaded bindings", "loaded", loaded, "dropped", dropped)
	}
}

// durable reports whether b is kept across a restart: not when it can be
// reached only over a connection, which dies with the process.
func durable(b *Binding) bool {
	// The transport first: NeedsFlow parses the Contact's host as an
	// address, and this runs for every binding of every journaled change.
	return !b.Source.Reliable() || !b.NeedsFlow()
}

// sortBindings orders bindings as Get returns them: q descending, then most
// recently refreshed first.
func sortBindings(list []Binding) {
	if len(list) <= smallSort {
		// A stable insertion sort that compares in place: the lists of
		// REGISTERs are short and nearly sorted (one binding changed),
		// and slices.SortStableFunc's comparator takes two Bindings by
		// value, whose frames grew REGISTER goroutines' stacks in the
		// profile of the REGISTER ladder.
		for i := 1; i < len(list); i++ {
			for j := i; j > 0 && before(&list[j], &list[j-1]); j-- {
				list[j], list[j-1] = list[j-1], list[j]
			}
		}
		return
	}
	slices.SortStableFunc(list, func(a, b Binding) int {
		if c := cmp.Compare(b.Q, a.Q); c != 0 {
			return c
		}
		return b.Received.Compare(a.Received)
	})
}

// smallSort is the longest list sortBindings sorts by insertion; longer
// ones (a restart's, from a file that may hold any number) take
// O(n log n).
const smallSort = 2 * DefaultMaxBindingsPerAOR

// before reports whether a goes strictly before b in Get's order.
func before(a, b *Binding) bool {
	if a.Q != b.Q {
		return a.Q > b.Q
	}
	return a.Received.After(b.Received)
}

// Get returns the unexpired bindings of aor (see Store).
func (m *Memory) Get(_ context.Context, aor string) ([]Binding, error) {
	now := m.clock.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return live(nil, m.aors[aor], now), nil
}

// live appends to dst copies of the bindings of list that have not expired
// at now. The stored list is kept sorted, so the result is too. dst grows
// once, to what it needs: appending a Binding (about 400 bytes) at a time
// to a nil dst cost an allocation per doubling for an AOR with more than
// one binding.
func live(dst, list []Binding, now time.Time) []Binding {
	n := 0
	for i := range list {
		if list[i].Expires.After(now) {
			n++
		}
	}
	if n == 0 {
		return dst
	}
	dst = slices.Grow(dst, n)
	for _, b := range list {
		if b.Expires.After(now) {
			b.Path = slices.Clone(b.Path)
			dst = append(dst, b)
		}
	}
	return dst
}

// Put stores b (see Store). With a data directory it returns once the
// change is in the journal and synced, or is a change of a binding that
// is not kept across a restart anyway (see durable).
func (m *Memory) Put(ctx context.Context, b Binding) error {
	now := m.clock.Now()
	switch {
	case b.AOR == "":
		return fmt.Errorf("%w: no AOR", ErrInvalidBinding)
	case b.Contact.Wildcard || b.Contact.URI.Scheme == "":
		return fmt.Errorf("%w: no contact URI", ErrInvalidBinding)
	case !b.Expires.After(now):
		return fmt.Errorf("%w: already expired", ErrInvalidBinding)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	old := m.aors[b.AOR]
	list := make([]Binding, 0, len(old)+1)
	var replaced *Binding
	for i := range old {
		switch {
		case old[i].Matches(&b):
			replaced = &old[i]
		case old[i].Expires.After(now):
			list = append(list, old[i])
		}
	}
	if len(list) >= m.maxPerAOR {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s has %d", ErrTooManyBindings, b.AOR, len(list))
	}
	list = append(list, b)
	list[len(list)-1].own(replaced)
	sortBindings(list)
	commit, err := m.changeLocked(b.AOR, list)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return commit.wait(ctx)
}

// Update applies u (see Store) under the store's lock. With a data
// directory it returns once the change is durable, as Put does.
func (m *Memory) Update(ctx context.Context, u Update) ([]Binding, error) {
	now := m.clock.Now()
	if err := u.Validate(now); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	old := m.aors[u.AOR]
	list, err := u.apply(old, now, m.maxPerAOR)
	if err != nil {
		kept := live(nil, old, now)
		m.mu.Unlock()
		return kept, err
	}
	commit, err := m.changeLocked(u.AOR, list)
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	out := live(nil, list, now)
	m.mu.Unlock()
	if err := commit.wait(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// Delete removes the binding b matches (see Store).
func (m *Memory) Delete(ctx context.Context, b Binding) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	old := m.aors[b.AOR]
	if !slices.ContainsFunc(old, func(o Binding) bool { return o.Matches(&b) }) {
		m.mu.Unlock()
		return nil
	}
	list := make([]Binding, 0, len(old))
	for i := range old {
		if !old[i].Matches(&b) {
			list = append(list, old[i])
		}
	}
	commit, err := m.changeLocked(b.AOR, list)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return commit.wait(ctx)
}

// DeleteAOR removes every binding of aor.
func (m *Memory) DeleteAOR(ctx context.Context, aor string) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	var commit *batch
	var err error
	if _, ok := m.aors[aor]; ok {
		commit, err = m.changeLocked(aor, nil)
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return commit.wait(ctx)
}

// DeleteFlow removes the bindings that need flow (see Store). They are
// never written to disk, so it does not wait for the disk.
func (m *Memory) DeleteFlow(ctx context.Context, flow sip.Addr) ([]Binding, error) {
	now := m.clock.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	var removed []Binding
	var commit *batch
	// Collect the AORs first: setLocked changes the index being read.
	aors := make([]string, 0, len(m.flows[flow]))
	for aor := range m.flows[flow] {
		aors = append(aors, aor)
	}
	for _, aor := range aors {
		old := m.aors[aor]
		list := make([]Binding, 0, len(old))
		for _, b := range old {
			if b.Source == flow && b.NeedsFlow() {
				if b.Expires.After(now) {
					removed = append(removed, b)
				}
				continue
			}
			list = append(list, b)
		}
		if len(list) != len(old) {
			c, err := m.changeLocked(aor, list)
			if err != nil {
				m.mu.Unlock()
				return nil, err
			}
			commit = cmp.Or(c, commit)
		}
	}
	m.mu.Unlock()
	if err := commit.wait(ctx); err != nil {
		return nil, err
	}
	return removed, nil
}

// All returns every unexpired binding (see Store).
func (m *Memory) All(_ context.Context) ([]Binding, error) {
	now := m.clock.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	aors := make([]string, 0, len(m.aors))
	for aor := range m.aors {
		aors = append(aors, aor)
	}
	slices.Sort(aors)
	var out []Binding
	for _, aor := range aors {
		out = live(out, m.aors[aor], now)
	}
	return out, nil
}

// Len returns the number of bindings held, expired ones not yet swept
// included; for metrics and tests.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, list := range m.aors {
		n += len(list)
	}
	return n
}

// changeLocked replaces the bindings of aor with list, as setLocked does,
// and appends the change to the journal's next batch, which it returns:
// the caller waits on it once it has let go of the lock. The batch is nil
// when there is nothing to wait for: no data directory, or no change to
// what a restart would load. The caller holds m.mu; on error nothing
// changed.
func (m *Memory) changeLocked(aor string, list []Binding) (*batch, error) {
	var commit *batch
	if m.disk != nil && !sameDurable(m.aors[aor], list) {
		var err error
		if commit, err = m.disk.appendLocked(aor, list); err != nil {
			return nil, err
		}
	}
	m.setLocked(aor, list)
	return commit, nil
}

// setLocked replaces the bindings of aor with list (nil or empty removes
// the AOR) and keeps the flow index in step. list must be a slice of its
// own, sorted; it is never changed after.
func (m *Memory) setLocked(aor string, list []Binding) {
	// Index the new list before unindexing the old, so that a binding
	// refreshed over the same flow does not drop and remake its entry.
	for i := range list {
		m.index(aor, &list[i])
	}
	for i := range m.aors[aor] {
		m.unindex(aor, &m.aors[aor][i])
	}
	if len(list) == 0 {
		delete(m.aors, aor)
	} else {
		m.aors[aor] = list
	}
}

// Only connections close, so only bindings from reliable transports are
// indexed by flow.
func (m *Memory) index(aor string, b *Binding) {
	if !b.Source.Reliable() {
		return
	}
	byAOR := m.flows[b.Source]
	if byAOR == nil {
		byAOR = make(map[string]int)
		m.flows[b.Source] = byAOR
	}
	byAOR[aor]++
}

func (m *Memory) unindex(aor string, b *Binding) {
	byAOR := m.flows[b.Source]
	if byAOR == nil {
		return
	}
	if byAOR[aor]--; byAOR[aor] <= 0 {
		delete(byAOR, aor)
		if len(byAOR) == 0 {
			delete(m.flows, b.Source)
		}
	}
}

// sweep drops expired bindings and schedules the next sweep. It runs from
// the clock's timer and does all its work under the lock, so once Close
// has taken the lock no sweep is in progress or will start.
func (m *Memory) sweep() {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	n := 0
	for aor, list := range m.aors {
		keep := 0
		for i := range list {
			if list[i].Expires.After(now) {
				keep++
			}
		}
		if keep == len(list) {
			continue
		}
		fresh := make([]Binding, 0, keep)
		for _, b := range list {
			if b.Expires.After(now) {
				fresh = append(fresh, b)
			}
		}
		n += len(list) - keep
		m.setLocked(aor, fresh)
	}
	if n > 0 {
		m.log.Debug("location: swept expired bindings", "count", n)
	}
	m.sweeper = m.clock.AfterFunc(m.sweepEvery, m.sweep)
}

// sameDurable reports whether old and list hold the same bindings as far
// as a restart would load them: then changing one to the other needs no
// journal record. A browser's refresh over its WebSocket is such a change.
func sameDurable(old, list []Binding) bool {
	i, j := 0, 0
	for {
		for i < len(old) && !durable(&old[i]) {
			i++
		}
		for j < len(list) && !durable(&list[j]) {
			j++
		}
		if i == len(old) || j == len(list) {
			return i == len(old) && j == len(list)
		}
		if !equalBinding(&old[i], &list[j]) {
			return false
		}
		i++
		j++
	}
}

// equalBinding reports whether a and b are equal in every field a record
// keeps.
func equalBinding(a, b *Binding) bool {
	return a.AOR == b.AOR && a.Contact == b.Contact && a.Expires.Equal(b.Expires) &&
		a.Q == b.Q && a.CallID == b.CallID && a.CSeq == b.CSeq &&
		a.Instance == b.Instance && a.RegID == b.RegID && slices.Equal(a.Path, b.Path) &&
		a.Source == b.Source && a.Received.Equal(b.Received) && a.UserAgent == b.UserAgent &&
		a.Node == b.Node
}

// Stats are counters of a Memory store, for metrics.
type Stats struct {
	// Bindings held, expired ones not yet swept included.
	Bindings int
	// Records and Syncs count the journal records written and the syncs
	// that made them durable: with concurrent changes one sync carries
	// several records (group commit).
	Records, Syncs uint64
	// Snapshots counts the snapshots written: at Open, on compaction,
	// and in place of a journal write that failed.
	Snapshots uint64
	// WriteErrors counts failed journal and snapshot writes.
	WriteErrors uint64
	// JournalBytes is the size of the journal being written.
	JournalBytes int64
}

// Stats returns the store's counters.
func (m *Memory) Stats() Stats {
	s := Stats{Bindings: m.Len()}
	if d := m.disk; d != nil {
		s.Records = d.records.Load()
		s.Syncs = d.syncs.Load()
		s.Snapshots = d.snapshots.Load()
		s.WriteErrors = d.writeErrors.Load()
		s.JournalBytes = d.journalBytes.Load()
	}
	return s
}

// Compact writes a snapshot of the store now and removes the journal it
// makes redundant; the store does it by itself as the journal grows.
// Without a data directory it does nothing.
func (m *Memory) Compact(ctx context.Context) error {
	if m.disk == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.RLock()
	closed := m.closed
	m.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return m.disk.compact()
}

// Close stops the sweeps, waits for the journal write under way, writes
// what no call has written yet, and returns the error of that last write. Later calls
// return the same. Every change whose call returned nil is already on
// disk, so Close has nothing else to save.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		if m.sweeper != nil {
			m.sweeper.Stop()
		}
		m.mu.Unlock()
		if m.disk != nil {
			m.closeErr = m.disk.close()
		}
	})
	return m.closeErr
}
