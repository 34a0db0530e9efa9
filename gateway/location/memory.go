package location

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// Defaults for zero fields of Options.
const (
	DefaultFlushInterval     = 5 * time.Second
	DefaultSweepInterval     = 30 * time.Second
	DefaultMaxBindingsPerAOR = 20
)

// SnapshotName is the file Memory keeps under its directory.
const SnapshotName = "locations.json"

// Options configure a Memory store. The zero value is a store that lives
// in memory only, with the defaults.
type Options struct {
	// Dir is the data directory the snapshot is kept in; it is created if
	// missing. Empty means no persistence.
	Dir string
	// FlushInterval is the most often the snapshot is rewritten: the first
	// change after a write schedules the next write this much later, and
	// every change until then goes into it. Default DefaultFlushInterval.
	FlushInterval time.Duration
	// SweepInterval is how often expired bindings are dropped from memory.
	// They are never returned in between. Default DefaultSweepInterval.
	SweepInterval time.Duration
	// MaxBindingsPerAOR bounds the bindings of one address of record,
	// default DefaultMaxBindingsPerAOR. AORs are accounts, so this bounds
	// the whole store.
	MaxBindingsPerAOR int
	// Clock drives expiry, sweeps and flushes; nil means the system clock.
	Clock clock.Clock
	// Logger receives write failures and sweeps; nil discards.
	Logger *slog.Logger

	// onFlush, when set by this package's tests, is called by the writer
	// after each snapshot write attempt.
	onFlush func(error)
}

// Memory is a Store served from memory and written behind to a JSON
// snapshot (see the package documentation). Create it with Open and stop
// it with Close, which writes pending changes.
type Memory struct {
	clock      clock.Clock
	log        *slog.Logger
	path       string // snapshot file; "" without persistence
	flushEvery time.Duration
	sweepEvery time.Duration
	maxPerAOR  int
	onFlush    func(error)

	mu      sync.RWMutex
	aors    map[string][]Binding
	flows   map[sip.Addr]map[string]int // reliable source → AOR → bindings from it
	version uint64                      // bumped on every change
	closed  bool
	sweeper clock.Timer

	// The writer goroutine's channels; nil without persistence.
	dirty    chan struct{}   // cap 1: a change since the last write
	tick     chan struct{}   // cap 1: the flush interval has passed
	flushReq chan chan error // Flush asks for a write now
	stop     chan struct{}   // closed by Close
	done     chan struct{}   // closed when the writer has returned
	written  uint64          // version last written; writer-owned
	finalErr error           // the last write's error, read after done

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Memory)(nil)

// Open returns a store, loading the snapshot under opts.Dir if there is
// one. Bindings that have expired, and bindings that need a flow that came
// over a connection (which died with the previous process), are dropped.
// A snapshot that cannot be decoded is renamed with a ".corrupt" suffix and
// the store starts empty: registrations are soft state that user agents
// refresh, and a damaged file must not keep the gateway from starting.
func Open(opts Options) (*Memory, error) {
	m := &Memory{
		clock:      clock.Or(opts.Clock),
		log:        opts.Logger,
		flushEvery: cmp.Or(opts.FlushInterval, DefaultFlushInterval),
		sweepEvery: cmp.Or(opts.SweepInterval, DefaultSweepInterval),
		maxPerAOR:  cmp.Or(opts.MaxBindingsPerAOR, DefaultMaxBindingsPerAOR),
		onFlush:    opts.onFlush,
		aors:       make(map[string][]Binding),
		flows:      make(map[sip.Addr]map[string]int),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if opts.Dir != "" {
		m.path = filepath.Join(opts.Dir, SnapshotName)
		records, err := loadSnapshot(opts.Dir, m.path, m.log)
		if err != nil {
			return nil, err
		}
		m.restore(records)
		m.dirty = make(chan struct{}, 1)
		m.tick = make(chan struct{}, 1)
		m.flushReq = make(chan chan error)
		m.stop = make(chan struct{})
		m.done = make(chan struct{})
		go m.writeLoop()
	}
	m.mu.Lock()
	m.sweeper = m.clock.AfterFunc(m.sweepEvery, m.sweep)
	m.mu.Unlock()
	return m, nil
}

// restore fills the store from a snapshot's records.
func (m *Memory) restore(records []record) {
	now := m.clock.Now()
	loaded, dropped := 0, 0
	byAOR := make(map[string][]Binding)
	for _, r := range records {
		b, err := r.binding()
		switch {
		case err != nil:
			m.log.Warn("location: skipping unreadable binding in snapshot", "aor", r.AOR, "err", err)
			dropped++
			continue
		case !b.Expires.After(now):
			dropped++
			continue
		case b.NeedsFlow() && b.Source.Reliable():
			// Its connection died with the previous process.
			dropped++
			continue
		}
		byAOR[b.AOR] = append(byAOR[b.AOR], b)
	}
	for aor, list := range byAOR {
		sortBindings(list)
		if len(list) > m.maxPerAOR {
			dropped += len(list) - m.maxPerAOR
			list = list[:m.maxPerAOR]
		}
		m.setLocked(aor, list)
		loaded += len(list)
	}
	m.version = 0 // what is in memory is what is on disk, less the dropped
	if loaded+dropped > 0 {
		m.log.Info("location: loaded bindings", "loaded", loaded, "dropped", dropped)
	}
}

// sortBindings orders bindings as Get returns them: q descending, then most
// recently refreshed first.
func sortBindings(list []Binding) {
	slices.SortStableFunc(list, func(a, b Binding) int {
		if c := cmp.Compare(b.Q, a.Q); c != 0 {
			return c
		}
		return b.Received.Compare(a.Received)
	})
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
// at now. The stored list is kept sorted, so the result is too.
func live(dst, list []Binding, now time.Time) []Binding {
	for _, b := range list {
		if b.Expires.After(now) {
			b.Path = slices.Clone(b.Path)
			dst = append(dst, b)
		}
	}
	return dst
}

// Put stores b (see Store).
func (m *Memory) Put(_ context.Context, b Binding) error {
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
	defer m.mu.Unlock()
	if m.closed {
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
		return fmt.Errorf("%w: %s has %d", ErrTooManyBindings, b.AOR, len(list))
	}
	list = append(list, b.clone(replaced))
	sortBindings(list)
	m.setLocked(b.AOR, list)
	return nil
}

// Delete removes the binding b matches (see Store).
func (m *Memory) Delete(_ context.Context, b Binding) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	old := m.aors[b.AOR]
	if !slices.ContainsFunc(old, func(o Binding) bool { return o.Matches(&b) }) {
		return nil
	}
	list := make([]Binding, 0, len(old))
	for i := range old {
		if !old[i].Matches(&b) {
			list = append(list, old[i])
		}
	}
	m.setLocked(b.AOR, list)
	return nil
}

// DeleteAOR removes every binding of aor.
func (m *Memory) DeleteAOR(_ context.Context, aor string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.aors[aor]; ok {
		m.setLocked(aor, nil)
	}
	return nil
}

// DeleteFlow removes the bindings that need flow (see Store).
func (m *Memory) DeleteFlow(_ context.Context, flow sip.Addr) ([]Binding, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var removed []Binding
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
			m.setLocked(aor, list)
		}
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

// setLocked replaces the bindings of aor with list (nil or empty removes
// the AOR), keeps the flow index in step and marks the store changed.
// list must be a slice of its own, sorted.
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
	m.version++
	if m.dirty != nil {
		select {
		case m.dirty <- struct{}{}:
		default:
		}
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

// Flush writes pending changes to the snapshot now, without waiting for
// the flush interval. Without persistence it does nothing.
func (m *Memory) Flush(ctx context.Context) error {
	if m.path == "" {
		return nil
	}
	reply := make(chan error, 1)
	select {
	case m.flushReq <- reply:
	case <-m.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the sweeps and the writer, writes pending changes, and
// returns the error of that last write. Later calls return the same.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		if m.sweeper != nil {
			m.sweeper.Stop()
		}
		m.mu.Unlock()
		if m.path != "" {
			close(m.stop)
			<-m.done
			m.closeErr = m.finalErr
		}
	})
	return m.closeErr
}

// writeLoop is the writer goroutine: it waits for a change, lets FlushInterval
// pass so that later changes join the same write, and writes.
func (m *Memory) writeLoop() {
	defer close(m.done)
	for {
		select {
		case <-m.stop:
			m.finalErr = m.flush()
			return
		case reply := <-m.flushReq:
			reply <- m.flush()
		case <-m.dirty:
			if !m.waitInterval() {
				m.finalErr = m.flush()
				return
			}
			if err := m.flush(); err != nil {
				// Try again after another interval.
				select {
				case m.dirty <- struct{}{}:
				default:
				}
			}
		}
	}
}

// waitInterval waits FlushInterval on the clock, serving Flush requests
// meanwhile. It reports false when the store is closing.
func (m *Memory) waitInterval() bool {
	select { // a tick left over from an interval cut short by Flush
	case <-m.tick:
	default:
	}
	t := m.clock.AfterFunc(m.flushEvery, func() {
		select {
		case m.tick <- struct{}{}:
		default:
		}
	})
	defer t.Stop()
	for {
		select {
		case <-m.tick:
			return true
		case <-m.stop:
			return false
		case reply := <-m.flushReq:
			reply <- m.flush()
		}
	}
}

// flush writes the snapshot if anything changed since the last write.
func (m *Memory) flush() error {
	m.mu.RLock()
	v := m.version
	if v == m.written {
		m.mu.RUnlock()
		return nil
	}
	snap := m.snapshotLocked()
	m.mu.RUnlock()
	err := writeSnapshot(m.path, snap)
	if err != nil {
		m.log.Error("location: writing snapshot failed", "path", m.path, "err", err)
	} else {
		m.written = v
	}
	if m.onFlush != nil {
		m.onFlush(err)
	}
	return err
}
