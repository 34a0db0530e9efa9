// Package cluster lets gateway instances share one location service on
// Redis and know of each other: cluster mode.
//
// Each instance is a node, named by its address on the SIP listener the
// others reach it at ("sip:10.0.0.2:5060;transport=tcp"); the bindings it
// stores carry that name (location.Binding.Node), since only it can send
// over their connections. A node keeps a heartbeat key with a short TTL
// in Redis, renewed every Interval, and learns at each beat which other
// nodes' keys are there: a node that dies stops renewing, Redis drops its
// key within TTL, and the others stop routing to its bindings at their
// next beat. A node that stops cleanly deletes its key at once (Leave).
//
// The nodes share one secret, kept in Redis (Secret): it keys the digest
// nonces, the flow tokens and the Record-Route stamps, so that a REGISTER
// challenged by one node can be answered to another, and a route one node
// writes is believed by the next.
//
// While Redis is out of reach a node keeps the last view it had of the
// others. The beat that reaches Redis again, or that finds the node's own
// key gone (Redis restarted without its data), calls Options.Rejoined, so
// that the node's bindings are written back; it keeps the nodes it knew
// as well as those it finds, since the others have not beaten since Redis
// lost their keys, and the next beat drops those that did not come back.
package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/clock"
)

// Defaults for zero fields of Options.
const (
	DefaultPrefix   = "switchboard:"
	DefaultTTL      = 5 * time.Second
	DefaultInterval = time.Second
)

// Options configure a Membership. Client and Node are required.
type Options struct {
	// Client is the connection to Redis; the caller closes it after Leave.
	Client redis.UniversalClient
	// Prefix starts every key, as the location store's; default
	// DefaultPrefix.
	Prefix string
	// Node is this instance's name: a SIP URI the others reach it at.
	Node string
	// TTL is how long the heartbeat key outlives its last renewal: how
	// soon the others give up on a node that died. Default DefaultTTL.
	TTL time.Duration
	// Interval is the time between beats; default DefaultInterval, and at
	// most a third of TTL.
	Interval time.Duration
	// Secret is the cluster's secret (see Secret), which every beat puts
	// back in Redis should Redis have lost it; nil puts nothing.
	Secret []byte
	// Rejoined, if not nil, is called from the beat that reaches Redis
	// after beats failed, or that finds the node's key gone: Redis may
	// have lost the node's bindings too.
	Rejoined func(ctx context.Context)
	// Clock times the beats; nil is the system clock. Expiry is Redis's.
	Clock clock.Clock
	// Logger receives joins, departures and outages; nil discards.
	Logger *slog.Logger
}

// Membership is this node's place in the cluster. Make it with New, start
// its beats with Start, end them with Leave. Its methods are safe for
// concurrent use.
type Membership struct {
	client   redis.UniversalClient
	prefix   string
	node     string
	boot     string // this process, in the heartbeat key's value
	secret   string
	ttl      time.Duration
	every    time.Duration
	rejoined func(ctx context.Context)
	clock    clock.Clock
	log      *slog.Logger

	live     atomic.Pointer[[]string]  // other live nodes, sorted
	lastBeat atomic.Pointer[time.Time] // when the view was last refreshed
	healthy  atomic.Bool

	mu      sync.Mutex // serialises beats
	failing bool       // the last beat failed
	beaten  bool       // a beat succeeded once

	runMu   sync.Mutex
	stop    chan struct{}
	stopped chan struct{}

	beats, failures, rejoins atomic.Uint64
}

// New returns a membership for opts.Node; nothing is sent before Beat or
// Start.
func New(opts Options) (*Membership, error) {
	switch {
	case opts.Client == nil:
		return nil, errors.New("cluster: no client")
	case opts.Node == "":
		return nil, errors.New("cluster: no node name")
	}
	boot := make([]byte, 8)
	rand.Read(boot)
	m := &Membership{
		client:   opts.Client,
		prefix:   cmp.Or(opts.Prefix, DefaultPrefix),
		node:     opts.Node,
		boot:     hex.EncodeToString(boot),
		secret:   string(opts.Secret),
		ttl:      cmp.Or(opts.TTL, DefaultTTL),
		every:    cmp.Or(opts.Interval, DefaultInterval),
		rejoined: opts.Rejoined,
		clock:    clock.Or(opts.Clock),
		log:      opts.Logger,
	}
	m.every = min(m.every, m.ttl/3)
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.live.Store(&[]string{})
	return m, nil
}

// Node returns this node's name.
func (m *Membership) Node() string { return m.node }

// Alive reports whether node is this one or a node whose heartbeat was in
// Redis at the last beat, or whether it was running at at, a time after
// the last beat: a binding that node stored or refreshed since is its
// proof of life, which no beat has contradicted yet. (A node that joined
// a moment ago is reached before this one beats again.)
func (m *Membership) Alive(node string, at time.Time) bool {
	if node == m.node {
		return true
	}
	if _, found := slices.BinarySearch(*m.live.Load(), node); found {
		return true
	}
	last := m.lastBeat.Load()
	return last != nil && at.After(*last)
}

// Peers returns the other live nodes, sorted.
func (m *Membership) Peers() []string { return slices.Clone(*m.live.Load()) }

// Healthy reports whether the last beat reached Redis.
func (m *Membership) Healthy() bool { return m.healthy.Load() }

// beat renews the node's key, puts the secret back if Redis lost it, and
// returns whether the key was there and the live nodes. One round trip.
// KEYS: the node's key, the set of nodes, the secret's key; ARGV: the
// node, its key's value, the TTL in ms, the prefix of node keys, the
// secret ("" for none).
var beat = redis.NewScript(`
local had = redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'GET')
redis.call('SADD', KEYS[2], ARGV[1])
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'NX') end
local out = {had or ''}
for _, n in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[4] .. n) == 1 then
    out[#out + 1] = n
  else
    redis.call('SREM', KEYS[2], n)
  end
end
return out
`)

func (m *Membership) nodeKey(node string) string { return m.prefix + "node:" + node }

// Beat renews the heartbeat once and refreshes the view of the others;
// Start does it every Interval. A failure leaves the view as it was.
func (m *Membership) Beat(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	bctx, cancel := context.WithTimeout(ctx, m.every)
	defer cancel()
	m.beats.Add(1)
	res, err := beat.Run(bctx, m.client,
		[]string{m.nodeKey(m.node), m.prefix + "nodes", m.prefix + "secret"},
		m.node, m.boot, m.ttl.Milliseconds(), m.prefix+"node:", m.secret).StringSlice()
	if err != nil {
		m.failures.Add(1)
		m.healthy.Store(false)
		if !m.failing {
			m.log.Warn("cluster: heartbeat failed; keeping the last view of the other instances", "err", err)
		}
		m.failing = true
		return fmt.Errorf("cluster: heartbeat: %w", err)
	}
	had := res[0]
	rejoin := m.failing || had != m.boot
	others := slices.DeleteFunc(res[1:], func(n string) bool { return n == m.node })
	if rejoin {
		// Redis lost the others' keys (a restart) or let them expire
		// (an outage longer than the TTL): they put them back at their
		// next beat. Until this one's next beat, who was alive stays
		// so, lest calls to their users fail for a beat.
		others = append(others, *m.live.Load()...)
	}
	slices.Sort(others)
	others = slices.Compact(others)
	m.note(others)
	m.live.Store(&others)
	now := m.clock.Now()
	m.lastBeat.Store(&now)
	m.healthy.Store(true)
	switch {
	case had != "" && had != m.boot:
		m.log.Error("cluster: another process beats under this node's name; give every instance its own SWITCHBOARD_CLUSTER_HOST or SIP TCP port", "node", m.node)
	case m.failing:
		m.log.Info("cluster: heartbeat reaches Redis again")
	case had == "" && m.beaten:
		m.log.Warn("cluster: Redis had lost this instance's heartbeat (restarted?); writing its bindings back")
	}
	m.failing, m.beaten = false, true
	if rejoin && m.rejoined != nil {
		m.rejoins.Add(1)
		rctx, cancel := context.WithTimeout(ctx, m.ttl)
		defer cancel()
		m.rejoined(rctx)
	}
	return nil
}

// note logs the nodes that joined or left since the last view.
func (m *Membership) note(now []string) {
	before := *m.live.Load()
	for _, n := range now {
		if _, found := slices.BinarySearch(before, n); !found {
			m.log.Info("cluster: instance joined", "node", n)
		}
	}
	for _, n := range before {
		if _, found := slices.BinarySearch(now, n); !found {
			m.log.Warn("cluster: instance gone; its users are not routed to until they register elsewhere", "node", n)
		}
	}
}

// Start beats at once and then every Interval until Leave.
func (m *Membership) Start(ctx context.Context) {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if m.stop != nil {
		return
	}
	m.stop, m.stopped = make(chan struct{}), make(chan struct{})
	ctx = context.WithoutCancel(ctx)
	go m.run(ctx, m.stop, m.stopped)
}

func (m *Membership) run(ctx context.Context, stop, stopped chan struct{}) {
	defer close(stopped)
	tick := make(chan struct{}, 1)
	for {
		m.Beat(ctx)
		t := m.clock.AfterFunc(m.every, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-tick:
		case <-stop:
			t.Stop()
			return
		}
	}
}

// Leave stops the beats and deletes the node's key, so that the others
// stop routing to it at their next beat rather than after TTL. ctx bounds
// the deletion.
func (m *Membership) Leave(ctx context.Context) error {
	m.runMu.Lock()
	stop, stopped := m.stop, m.stopped
	m.stop = nil
	m.runMu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.every)
	defer cancel()
	// Only our own key: a successor under the same name keeps its own.
	err := leave.Run(ctx, m.client, []string{m.nodeKey(m.node), m.prefix + "nodes"}, m.node, m.boot).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	m.log.Info("cluster: left", "node", m.node)
	return nil
}

var leave = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
`)

// Stats are the counters of a Membership, for metrics.
type Stats struct {
	// Peers is the number of other live nodes at the last beat.
	Peers int
	// Healthy is set when the last beat reached Redis.
	Healthy bool
	// Beats counts the beats, Failures those that failed, Rejoins those
	// that called Rejoined.
	Beats, Failures, Rejoins uint64
}

// Stats returns the membership's counters.
func (m *Membership) Stats() Stats {
	return Stats{
		Peers:    len(*m.live.Load()),
		Healthy:  m.healthy.Load(),
		Beats:    m.beats.Load(),
		Failures: m.failures.Load(),
		Rejoins:  m.rejoins.Load(),
	}
}

// SecretLen is the length of the cluster's secret.
const SecretLen = 32

// getSecret returns the secret, making it if there is none.
var getSecret = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`)

// Secret returns the cluster's secret: the one in Redis under prefix, or
// 32 new random bytes that it puts there when there is none. Every node
// asks at start, so that they all key their nonces, flow tokens and
// stamps alike. Anyone who can read Redis can read it, as they could
// rewrite the bindings: keep Redis private.
func Secret(ctx context.Context, client redis.UniversalClient, prefix string) ([]byte, error) {
	fresh := make([]byte, SecretLen)
	rand.Read(fresh)
	v, err := getSecret.Run(ctx, client, []string{cmp.Or(prefix, DefaultPrefix) + "secret"}, fresh).Text()
	if err != nil {
		return nil, fmt.Errorf("cluster: get the shared secret from redis: %w", err)
	}
	if len(v) != SecretLen {
		return nil, fmt.Errorf("cluster: the shared secret in redis is %d bytes, want %d", len(v), SecretLen)
	}
	return []byte(v), nil
}
