package location

import (
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// Defaults of Instances.
const (
	// DefaultMaxInstances bounds the instances followed in all.
	DefaultMaxInstances = 65536
	// DefaultInstancesPerAOR bounds the instances followed per address
	// of record, as DefaultMaxBindingsPerAOR bounds its bindings.
	DefaultInstancesPerAOR = DefaultMaxBindingsPerAOR
	// DefaultReplacedFlows is how many of the flows an instance left
	// behind still lead to its current one.
	DefaultReplacedFlows = 8
)

// Instances follows outbound user agents (RFC 5626) from connection to
// connection. A browser whose WebSocket dropped opens a new one and
// registers again with the same +sip.instance and reg-id; so does a phone
// whose TCP connection broke. Instances remembers, per instance (AOR,
// +sip.instance and reg-id), the flow of its latest registration and the
// flows it left behind, so that what is still tied to an old flow — a
// bridged call's leg, a flow token in a dialog's route set — can follow
// the user agent to its new connection.
//
// Only registrations move an instance, and only to the connection they
// came over: feed Register with the bindings the registrar stored, which
// their user authenticated for. A flow therefore never leads to a
// connection from which another address of record registered.
//
// A flow belongs to the instance that registered over it last, so a
// connection that carries the registrations of several instances follows
// only that one. An instance is forgotten once its registration has
// lapsed.
//
// The zero value is ready to use; an Instances is safe for concurrent
// use. Memory is bounded: per address of record the instance whose
// registration lapses first makes room for a new one, and beyond Max in
// all new instances are not followed (counted in Refused).
type Instances struct {
	// Max bounds the instances followed; default DefaultMaxInstances.
	Max int
	// PerAOR bounds the instances of one address of record; default
	// DefaultInstancesPerAOR.
	PerAOR int
	// Replaced bounds the flows an instance left behind that still lead
	// to its current one, newest kept; default DefaultReplacedFlows.
	Replaced int
	// Clock dates expiries; nil is the system clock.
	Clock clock.Clock

	mu        sync.Mutex
	byKey     map[instanceKey]*instance
	byAOR     map[string][]*instance
	byFlow    map[sip.Addr]*instance
	lastSweep time.Time
	moves     uint64
	refused   uint64
}

// instanceKey names an outbound flow of a user agent (RFC 5626 §4.2).
type instanceKey struct {
	aor, instance string
	regID         int
}

type instance struct {
	key      instanceKey
	flow     sip.Addr   // of the latest registration
	replaced []sip.Addr // flows left behind, oldest first
	expires  time.Time
}

// InstanceStats counts the work of Instances.
type InstanceStats struct {
	// Instances is the number of instances followed now.
	Instances int
	// Moves counts registrations that moved an instance to a new flow.
	Moves uint64
	// Refused counts instances not followed because Max were.
	Refused uint64
}

// sweepInterval is how often expired instances are dropped; Follow never
// uses one in between.
const sweepInterval = time.Minute

// Register records that b, a binding as the registrar stored it, came
// over b.Source. When b's instance registered over another flow before,
// and that flow is still its own (no other instance registered over it
// since), it returns that flow and true: the user agent moved to b.Source,
// and what was tied to the old flow may follow it. A flow that another
// instance registered over since is that one's: nothing of it moves.
// Bindings that do not use outbound (Binding.Outbound) or did not come
// over a connection (Source.Flow 0) are ignored, as are expired ones.
func (in *Instances) Register(b *Binding) (replaced sip.Addr, moved bool) {
	if !b.Outbound() || b.Source.Flow == 0 {
		return sip.Addr{}, false
	}
	now := clock.Or(in.Clock).Now()
	if !b.Expires.After(now) {
		return sip.Addr{}, false
	}
	key := instanceKey{b.AOR, b.Instance, b.RegID}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.init()
	in.sweep(now)
	inst := in.byKey[key]
	if inst == nil {
		if !in.makeRoom(b.AOR) {
			in.refused++
			return sip.Addr{}, false
		}
		inst = &instance{key: instanceKey{strings.Clone(key.aor), strings.Clone(key.instance), key.regID}, flow: b.Source, expires: b.Expires}
		in.byKey[inst.key] = inst
		in.byAOR[inst.key.aor] = append(in.byAOR[inst.key.aor], inst)
		in.byFlow[b.Source] = inst
		return sip.Addr{}, false
	}
	inst.expires = b.Expires
	if inst.flow == b.Source {
		in.byFlow[b.Source] = inst
		return sip.Addr{}, false
	}
	old := inst.flow
	owned := in.byFlow[old] == inst
	in.byFlow[b.Source] = inst
	inst.flow = b.Source
	// A user agent may come back to a flow it had left: it is current
	// again, not replaced.
	for i, f := range inst.replaced {
		if f == b.Source {
			inst.replaced = append(inst.replaced[:i], inst.replaced[i+1:]...)
			break
		}
	}
	inst.replaced = append(inst.replaced, old)
	if n := len(inst.replaced) - orInt(in.Replaced, DefaultReplacedFlows); n > 0 {
		for _, f := range inst.replaced[:n] {
			in.release(f, inst)
		}
		inst.replaced = append(inst.replaced[:0], inst.replaced[n:]...)
	}
	in.moves++
	if !owned {
		return sip.Addr{}, false
	}
	return old, true
}

// Follow returns the flow that now carries what flow carried: the flow of
// the latest registration of the instance that registered over flow last,
// or flow itself when no instance moved away from it.
func (in *Instances) Follow(flow sip.Addr) sip.Addr {
	if flow.Flow == 0 {
		return flow
	}
	now := clock.Or(in.Clock).Now()
	in.mu.Lock()
	defer in.mu.Unlock()
	inst := in.byFlow[flow]
	if inst == nil || !inst.expires.After(now) {
		return flow
	}
	return inst.flow
}

// Stats returns the counters of in.
func (in *Instances) Stats() InstanceStats {
	in.mu.Lock()
	defer in.mu.Unlock()
	return InstanceStats{Instances: len(in.byKey), Moves: in.moves, Refused: in.refused}
}

func (in *Instances) init() {
	if in.byKey == nil {
		in.byKey = make(map[instanceKey]*instance)
		in.byAOR = make(map[string][]*instance)
		in.byFlow = make(map[sip.Addr]*instance)
	}
}

// makeRoom makes room for one more instance of aor, forgetting the one of
// aor that lapses first when aor has PerAOR; it reports false when Max
// instances are followed all the same. in.mu is held.
func (in *Instances) makeRoom(aor string) bool {
	if list := in.byAOR[aor]; len(list) >= orInt(in.PerAOR, DefaultInstancesPerAOR) {
		first := list[0]
		for _, inst := range list[1:] {
			if inst.expires.Before(first.expires) {
				first = inst
			}
		}
		in.forget(first)
	}
	return len(in.byKey) < orInt(in.Max, DefaultMaxInstances)
}

// sweep forgets the instances whose registration lapsed, at most once per
// sweepInterval. in.mu is held.
func (in *Instances) sweep(now time.Time) {
	if now.Sub(in.lastSweep) < sweepInterval {
		return
	}
	in.lastSweep = now
	for _, inst := range in.byKey {
		if !inst.expires.After(now) {
			in.forget(inst)
		}
	}
}

// forget drops inst and the flows that lead to it. in.mu is held.
func (in *Instances) forget(inst *instance) {
	delete(in.byKey, inst.key)
	list := in.byAOR[inst.key.aor]
	for i, o := range list {
		if o == inst {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(in.byAOR, inst.key.aor)
	} else {
		in.byAOR[inst.key.aor] = list
	}
	in.release(inst.flow, inst)
	for _, f := range inst.replaced {
		in.release(f, inst)
	}
}

// release unmaps flow when it leads to inst. in.mu is held.
func (in *Instances) release(flow sip.Addr, inst *instance) {
	if in.byFlow[flow] == inst {
		delete(in.byFlow, flow)
	}
}

func orInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}
