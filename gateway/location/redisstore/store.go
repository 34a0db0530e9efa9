// Package redisstore is a location.Store on Redis (or Valkey), which
// several gateway instances share: the location service of cluster mode.
//
// Each address of record is one key holding its bindings, written only by
// one server-side script (see change), so that every REGISTER is one
// atomic read-check-write and one round trip, whichever instance it
// reaches. The key expires with the last of its bindings: Redis forgets a
// user whose registrations lapse without anyone sweeping.
//
// A store also keeps in memory the bindings its own instance holds the
// connections of (Binding.Node is Options.Node). They serve two ends:
// DeleteFlow knows which AORs a closed connection carried without asking
// Redis, and while Redis is out of reach Get answers from them, so that
// calls to the users connected to this instance go on. Writes then fail
// with location.ErrUnavailable, which the registrar answers with 503 and
// Retry-After. Republish writes them back after Redis lost them (a
// restart without persistence).
//
// A request within a dialog never reaches the store: the proxy's dialog
// table routes it.
package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/sip"
)

// Defaults for zero fields of Options.
const (
	DefaultPrefix        = "switchboard:"
	DefaultTimeout       = 2 * time.Second
	DefaultSweepInterval = 30 * time.Second
)

// Options configure a Store. Client is required.
type Options struct {
	// Client is the connection to Redis; the caller closes it after the
	// store. A single server, or a failover group behind Sentinel: the
	// script reads and writes one key, but the keys of nodes and secrets
	// (package cluster) are others, so Redis Cluster is not supported.
	Client redis.UniversalClient
	// Prefix starts every key; gateways that share a location service
	// share it. Default DefaultPrefix.
	Prefix string
	// Node is this gateway instance's name (location.Binding.Node): the
	// bindings it stores with it are the ones it holds the connections of.
	Node string
	// MaxBindingsPerAOR bounds the bindings of one AOR, default
	// location.DefaultMaxBindingsPerAOR.
	MaxBindingsPerAOR int
	// Timeout bounds each call to Redis, beyond the caller's context, so
	// that a REGISTER does not wait on a server that does not answer.
	// Default DefaultTimeout.
	Timeout time.Duration
	// SweepInterval is how often expired bindings leave the memory of the
	// instance's own bindings; default DefaultSweepInterval.
	SweepInterval time.Duration
	// Clock dates expiries; nil is the system clock. Redis expires keys
	// on its own clock, by the time left at each write.
	Clock clock.Clock
	// Logger receives the outages of Redis and their end; nil discards.
	Logger *slog.Logger
}

// Store is a location.Store on Redis. Make it with New; it is safe for
// concurrent use.
type Store struct {
	client  redis.UniversalClient
	prefix  string
	node    string
	max     int
	timeout time.Duration
	every   time.Duration
	clock   clock.Clock
	log     *slog.Logger

	mu      sync.Mutex
	held    map[string][]location.Binding // by AOR: this node's bindings, sorted
	closed  bool
	sweeper clock.Timer

	down                      atomic.Bool
	calls, failures, fallback atomic.Uint64
}

var _ location.Store = (*Store)(nil)

// New returns a store on opts.Client. It does not talk to Redis yet.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("redisstore: no client")
	}
	s := &Store{
		client:  opts.Client,
		prefix:  cmp.Or(opts.Prefix, DefaultPrefix),
		node:    opts.Node,
		max:     cmp.Or(opts.MaxBindingsPerAOR, location.DefaultMaxBindingsPerAOR),
		timeout: cmp.Or(opts.Timeout, DefaultTimeout),
		every:   cmp.Or(opts.SweepInterval, DefaultSweepInterval),
		clock:   clock.Or(opts.Clock),
		log:     opts.Logger,
		held:    make(map[string][]location.Binding),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mu.Lock()
	s.sweeper = s.clock.AfterFunc(s.every, s.sweep)
	s.mu.Unlock()
	return s, nil
}

// key is the key of aor's bindings.
func (s *Store) key(aor string) string { return s.prefix + "aor:" + aor }

// op is an operation of the script.
type op struct {
	CallID  string   `json:"ci"`
	CSeq    uint32   `json:"cs"`
	All     bool     `json:"all,omitempty"`
	Changes []opItem `json:"ch"`
	Merge   bool     `json:"merge,omitempty"`
	Flow    *opFlow  `json:"df,omitempty"`
}

type opItem struct {
	R  entry `json:"r"`
	RM bool  `json:"rm,omitempty"`
}

type opFlow struct {
	S string `json:"s"`
	N string `json:"n"`
}

// run runs the script on aor's key and returns its status and bindings.
func (s *Store) run(ctx context.Context, aor string, now time.Time, o *op) (string, []location.Binding, error) {
	if o.Changes == nil {
		o.Changes = []opItem{}
	}
	arg, err := json.Marshal(o)
	if err != nil {
		return "", nil, fmt.Errorf("redisstore: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	s.calls.Add(1)
	res, err := change.Run(ctx, s.client, []string{s.key(aor)}, now.UnixMilli(), s.max, arg).StringSlice()
	if err != nil {
		return "", nil, s.failed("script", err)
	}
	s.up()
	if len(res) == 0 {
		return "", nil, errors.New("redisstore: empty answer from the script")
	}
	out := make([]location.Binding, 0, len(res)-1)
	for _, raw := range res[1:] {
		b, err := location.UnmarshalBinding([]byte(raw))
		if err != nil {
			return "", nil, fmt.Errorf("redisstore: %s: %w", aor, err)
		}
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	return res[0], out, nil
}

// failed classifies err: Redis out of reach (a network error, a timeout,
// a server loading its data or not the master) is
// location.ErrUnavailable; anything else is a fault.
func (s *Store) failed(what string, err error) error {
	s.failures.Add(1)
	if !unavailable(err) {
		return fmt.Errorf("redisstore: %s: %w", what, err)
	}
	if !s.down.Swap(true) {
		s.log.Warn("redis is out of reach: registrations are refused, calls go to the users connected here", "err", err)
	}
	return fmt.Errorf("redisstore: %s: %w: %w", what, location.ErrUnavailable, err)
}

// up notes that Redis answered.
func (s *Store) up() {
	if s.down.Swap(false) {
		s.log.Info("redis is back")
	}
}

// unavailable reports an error that says Redis cannot be reached or
// cannot serve for now, rather than that the request was wrong.
func unavailable(err error) bool {
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrClosed),
		errors.Is(err, redis.ErrPoolTimeout), errors.As(err, &nerr):
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// Connection resets and refusals that go-redis passes on unwrapped.
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "EOF") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset")
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Get returns the bindings of aor (see location.Store). While Redis is
// out of reach it returns the bindings this instance holds, and no error.
func (s *Store) Get(ctx context.Context, aor string) ([]location.Binding, error) {
	if s.isClosed() {
		return nil, location.ErrClosed
	}
	now := s.clock.Now()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	s.calls.Add(1)
	raw, err := s.client.Get(ctx, s.key(aor)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		s.up()
		return nil, nil
	case err != nil:
		err = s.failed("get", err)
		if !errors.Is(err, location.ErrUnavailable) {
			return nil, err
		}
		s.fallback.Add(1)
		return s.heldBindings(aor, now), nil
	}
	s.up()
	list, err := decodeEntries(raw)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %s: %w", aor, err)
	}
	return sorted(list, now), nil
}

// sorted returns the bindings of list that have not expired at now, as
// Get orders them.
func sorted(list []location.Binding, now time.Time) []location.Binding {
	out := list[:0]
	for _, b := range list {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	slices.SortStableFunc(out, func(a, b location.Binding) int {
		if c := cmp.Compare(b.Q, a.Q); c != 0 {
			return c
		}
		return b.Received.Compare(a.Received)
	})
	return out
}

// Update applies u (see location.Store) in one run of the script.
func (s *Store) Update(ctx context.Context, u location.Update) ([]location.Binding, error) {
	if s.isClosed() {
		return nil, location.ErrClosed
	}
	now := s.clock.Now()
	if err := u.Validate(now); err != nil {
		return nil, err
	}
	o := &op{CallID: u.CallID, CSeq: u.CSeq, All: u.RemoveAll, Changes: make([]opItem, 0, len(u.Changes))}
	for i := range u.Changes {
		e, err := newEntry(&u.Changes[i].Binding)
		if err != nil {
			return nil, err
		}
		o.Changes = append(o.Changes, opItem{R: e, RM: u.Changes[i].Remove})
	}
	status, list, err := s.run(ctx, u.AOR, now, o)
	if err != nil {
		return nil, err
	}
	list = sorted(list, now)
	switch status {
	case "ok":
		if len(u.Changes) > 0 || u.RemoveAll {
			s.hold(u.AOR, list, now)
		}
		return list, nil
	case "order":
		return nil, fmt.Errorf("%w: %s Call-ID %s CSeq %d", location.ErrOutOfOrder, u.AOR, u.CallID, u.CSeq)
	case "many":
		return list, fmt.Errorf("%w: %s", location.ErrTooManyBindings, u.AOR)
	}
	return nil, fmt.Errorf("redisstore: the script answered %q", status)
}

// Put stores b (see location.Store): an Update without order check.
func (s *Store) Put(ctx context.Context, b location.Binding) error {
	_, err := s.Update(ctx, location.Update{AOR: b.AOR, Changes: []location.Change{{Binding: b}}})
	return err
}

// Delete removes the binding b matches (see location.Store).
func (s *Store) Delete(ctx context.Context, b location.Binding) error {
	_, err := s.Update(ctx, location.Update{AOR: b.AOR, Changes: []location.Change{{Binding: b, Remove: true}}})
	return err
}

// DeleteAOR removes every binding of aor.
func (s *Store) DeleteAOR(ctx context.Context, aor string) error {
	_, err := s.Update(ctx, location.Update{AOR: aor, RemoveAll: true})
	return err
}

// DeleteFlow removes the bindings of this instance that came over flow
// and can be reached over it only (see location.Store). The AORs they
// belong to are known here, so it costs one round trip per AOR and none
// for a connection that carried no registration. While Redis is out of
// reach they are forgotten here anyway, so that no call is sent to the
// closed connection, and the error wraps location.ErrUnavailable.
func (s *Store) DeleteFlow(ctx context.Context, flow sip.Addr) ([]location.Binding, error) {
	now := s.clock.Now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, location.ErrClosed
	}
	var aors []string
	for aor, list := range s.held {
		if slices.ContainsFunc(list, func(b location.Binding) bool { return b.Source == flow && b.NeedsFlow() }) {
			aors = append(aors, aor)
		}
	}
	s.mu.Unlock()
	slices.Sort(aors)
	var removed []location.Binding
	var errs []error
	for _, aor := range aors {
		_, gone, err := s.run(ctx, aor, now, &op{Flow: &opFlow{S: sourceKey(flow), N: s.node}})
		if err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, gone...)
		}
		s.forgetFlow(aor, flow)
	}
	return removed, errors.Join(errs...)
}

// All returns every unexpired binding (see location.Store): it scans the
// keyspace, for the admin API, not for each request.
func (s *Store) All(ctx context.Context) ([]location.Binding, error) {
	if s.isClosed() {
		return nil, location.ErrClosed
	}
	now := s.clock.Now()
	var keys []string
	iter := s.client.Scan(ctx, 0, s.prefix+"aor:*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, s.failed("scan", err)
	}
	slices.Sort(keys)
	var out []location.Binding
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 500)]
		keys = keys[len(batch):]
		vals, err := s.client.MGet(ctx, batch...).Result()
		if err != nil {
			return nil, s.failed("mget", err)
		}
		for _, v := range vals {
			raw, ok := v.(string)
			if !ok {
				continue // expired since the scan
			}
			list, err := decodeEntries(raw)
			if err != nil {
				return nil, err
			}
			out = append(out, sorted(list, now)...)
		}
	}
	s.up()
	return out, nil
}

// hold keeps in memory this instance's bindings among list, the bindings
// of aor after a change.
func (s *Store) hold(aor string, list []location.Binding, now time.Time) {
	var mine []location.Binding
	for _, b := range list {
		if b.Node == s.node && b.Expires.After(now) {
			mine = append(mine, b)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(mine) == 0 {
		delete(s.held, aor)
	} else {
		s.held[aor] = mine
	}
}

// forgetFlow drops from memory aor's bindings that need flow.
func (s *Store) forgetFlow(aor string, flow sip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := slices.DeleteFunc(slices.Clone(s.held[aor]), func(b location.Binding) bool {
		return b.Source == flow && b.NeedsFlow()
	})
	if len(list) == 0 {
		delete(s.held, aor)
	} else {
		s.held[aor] = list
	}
}

// heldBindings returns this instance's unexpired bindings of aor.
func (s *Store) heldBindings(aor string, now time.Time) []location.Binding {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []location.Binding
	for _, b := range s.held[aor] {
		if b.Expires.After(now) {
			b.Path = slices.Clone(b.Path)
			out = append(out, b)
		}
	}
	return out
}

// Held returns the unexpired bindings this instance holds the connections
// of, by AOR, from memory: for metrics, without a round trip.
func (s *Store) Held() []location.Binding {
	now := s.clock.Now()
	s.mu.Lock()
	aors := make([]string, 0, len(s.held))
	for aor := range s.held {
		aors = append(aors, aor)
	}
	s.mu.Unlock()
	slices.Sort(aors)
	var out []location.Binding
	for _, aor := range aors {
		out = append(out, s.heldBindings(aor, now)...)
	}
	return out
}

// sweep drops expired bindings from memory and schedules the next sweep.
func (s *Store) sweep() {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for aor, list := range s.held {
		list = slices.DeleteFunc(slices.Clone(list), func(b location.Binding) bool { return !b.Expires.After(now) })
		if len(list) == 0 {
			delete(s.held, aor)
		} else {
			s.held[aor] = list
		}
	}
	s.sweeper = s.clock.AfterFunc(s.every, s.sweep)
}

// Republish writes this instance's bindings back to Redis, each unless a
// binding it matches was refreshed there since: after Redis restarted
// empty, the users connected here are reachable from every instance
// again without waiting for their next REGISTER. It returns how many AORs
// it wrote.
func (s *Store) Republish(ctx context.Context) (int, error) {
	now := s.clock.Now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, location.ErrClosed
	}
	held := make(map[string][]location.Binding, len(s.held))
	for aor, list := range s.held {
		held[aor] = list
	}
	s.mu.Unlock()
	n := 0
	for aor, list := range held {
		o := &op{Merge: true}
		for i := range list {
			if !list[i].Expires.After(now) {
				continue
			}
			e, err := newEntry(&list[i])
			if err != nil {
				return n, err
			}
			o.Changes = append(o.Changes, opItem{R: e})
		}
		if len(o.Changes) == 0 {
			continue
		}
		if _, _, err := s.run(ctx, aor, now, o); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Stats are the counters of a Store, for metrics.
type Stats struct {
	// Held is the number of this instance's bindings kept in memory.
	Held int
	// Calls counts the calls to Redis, Failures those that failed.
	Calls, Failures uint64
	// Fallbacks counts the lookups answered from memory because Redis was
	// out of reach.
	Fallbacks uint64
	// Down is set while the last call to Redis failed for want of it.
	Down bool
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	held := 0
	for _, list := range s.held {
		held += len(list)
	}
	s.mu.Unlock()
	return Stats{
		Held:      held,
		Calls:     s.calls.Load(),
		Failures:  s.failures.Load(),
		Fallbacks: s.fallback.Load(),
		Down:      s.down.Load(),
	}
}

// Close stops the sweeps; later calls fail with location.ErrClosed. The
// client stays open: it is the caller's.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.sweeper != nil {
		s.sweeper.Stop()
	}
	return nil
}

// String describes the store for logs.
func (s *Store) String() string {
	return "redis location store, prefix " + strconv.Quote(s.prefix) + ", node " + s.node
}
