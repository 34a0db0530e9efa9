package location

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// outbound is a binding of user's instance (reg-id 1) registered over
// flow for an hour.
func outbound(c *clock.Fake, user, instance string, flow sip.Addr) *Binding {
	return &Binding{
		AOR:      "sip:" + user + "@example.com",
		Contact:  sip.Address{URI: sip.URI{Scheme: "sip", User: user, Host: "x.invalid"}},
		Instance: instance,
		RegID:    1,
		Source:   flow,
		Expires:  c.Now().Add(time.Hour),
		Received: c.Now(),
	}
}

// TestInstancesFollowReconnects: a user agent that registers its instance
// again over a new connection moves there, and every flow it left
// behind leads to the new one; nothing else moves.
func TestInstancesFollowReconnects(t *testing.T) {
	c := clock.NewFake(start)
	in := &Instances{Clock: c}
	const alice = "<urn:uuid:00000000-0000-1000-8000-0000000000a1>"
	if _, moved := in.Register(outbound(c, "alice", alice, wsFlow(1))); moved {
		t.Fatal("a first registration moved")
	}
	if got := in.Follow(wsFlow(1)); got != wsFlow(1) {
		t.Fatalf("current flow follows to %v", got)
	}
	// A refresh over the same flow moves nothing.
	if _, moved := in.Register(outbound(c, "alice", alice, wsFlow(1))); moved {
		t.Fatal("a refresh moved")
	}
	old, moved := in.Register(outbound(c, "alice", alice, wsFlow(2)))
	if !moved || old != wsFlow(1) {
		t.Fatalf("reconnect: %v %v", old, moved)
	}
	if _, moved := in.Register(outbound(c, "alice", alice, wsFlow(3))); !moved {
		t.Fatal("second reconnect did not move")
	}
	for _, f := range []uint64{1, 2, 3} {
		if got := in.Follow(wsFlow(f)); got != wsFlow(3) {
			t.Errorf("flow %d follows to %v, want flow 3", f, got)
		}
	}
	if got := in.Follow(wsFlow(9)); got != wsFlow(9) {
		t.Errorf("an unknown flow follows to %v", got)
	}

	// Another user's registration of the same instance id is another
	// instance: it moves nothing of alice's.
	if _, moved := in.Register(outbound(c, "mallory", alice, wsFlow(4))); moved {
		t.Fatal("mallory's first registration moved")
	}
	if _, moved := in.Register(outbound(c, "mallory", alice, wsFlow(5))); !moved {
		t.Fatal("mallory's reconnect did not move")
	}
	if got := in.Follow(wsFlow(1)); got != wsFlow(3) {
		t.Errorf("alice's old flow follows to %v after mallory moved", got)
	}

	// Without outbound, or without a connection, nothing is followed.
	plain := outbound(c, "bob", "", wsFlow(6))
	plain.RegID = 0
	in.Register(plain)
	udp := outbound(c, "carol", alice, sip.Addr{Transport: sip.UDP, AddrPort: wsFlow(7).AddrPort})
	in.Register(udp)
	if st := in.Stats(); st.Instances != 2 || st.Moves != 3 {
		t.Errorf("stats %+v, want 2 instances and 3 moves", st)
	}

	// Once alice's registration lapsed, her old flows lead nowhere.
	c.Advance(time.Hour)
	if got := in.Follow(wsFlow(1)); got != wsFlow(1) {
		t.Errorf("a lapsed instance's flow follows to %v", got)
	}
	c.Advance(sweepInterval)
	in.Register(outbound(c, "dave", alice, wsFlow(8)))
	if st := in.Stats(); st.Instances != 1 {
		t.Errorf("%d instances after the sweep, want dave's alone", st.Instances)
	}
}

// TestInstancesReturnToFlow: a user agent that comes back to a flow it
// had left follows from the one it left.
func TestInstancesReturnToFlow(t *testing.T) {
	c := clock.NewFake(start)
	in := &Instances{Clock: c}
	const id = "<urn:uuid:00000000-0000-1000-8000-0000000000a2>"
	in.Register(outbound(c, "alice", id, wsFlow(1)))
	in.Register(outbound(c, "alice", id, wsFlow(2)))
	if old, moved := in.Register(outbound(c, "alice", id, wsFlow(1))); !moved || old != wsFlow(2) {
		t.Fatalf("back to flow 1: %v %v", old, moved)
	}
	if got := in.Follow(wsFlow(2)); got != wsFlow(1) {
		t.Errorf("flow 2 follows to %v", got)
	}
	if got := in.Follow(wsFlow(1)); got != wsFlow(1) {
		t.Errorf("flow 1 follows to %v", got)
	}
}

// TestInstancesSharedFlow: a connection that carries two instances
// belongs to the one that registered over it last.
func TestInstancesSharedFlow(t *testing.T) {
	c := clock.NewFake(start)
	in := &Instances{Clock: c}
	in.Register(outbound(c, "alice", "<urn:uuid:a>", wsFlow(1)))
	in.Register(outbound(c, "bob", "<urn:uuid:b>", wsFlow(1)))
	// Alice moves, but flow 1 is bob's now: what goes over it (bob's
	// calls) must not move to alice's connection.
	if old, moved := in.Register(outbound(c, "alice", "<urn:uuid:a>", wsFlow(2))); moved {
		t.Errorf("alice's move off bob's flow moved %v", old)
	}
	if got := in.Follow(wsFlow(1)); got != wsFlow(1) {
		t.Errorf("bob's current flow follows alice to %v", got)
	}
	if old, moved := in.Register(outbound(c, "bob", "<urn:uuid:b>", wsFlow(3))); !moved || old != wsFlow(1) {
		t.Errorf("bob's move: %v %v", old, moved)
	}
	if got := in.Follow(wsFlow(1)); got != wsFlow(3) {
		t.Errorf("flow 1 follows to %v, want bob's flow 3", got)
	}
}

// TestInstancesCaps: the flows left behind, the instances of one AOR and
// the instances in all are bounded.
func TestInstancesCaps(t *testing.T) {
	c := clock.NewFake(start)

	t.Run("replaced flows", func(t *testing.T) {
		in := &Instances{Clock: c, Replaced: 2}
		for f := uint64(1); f <= 4; f++ {
			in.Register(outbound(c, "alice", "<urn:uuid:a>", wsFlow(f)))
		}
		if got := in.Follow(wsFlow(1)); got != wsFlow(1) {
			t.Errorf("the oldest flow left behind still follows, to %v", got)
		}
		for _, f := range []uint64{2, 3} {
			if got := in.Follow(wsFlow(f)); got != wsFlow(4) {
				t.Errorf("flow %d follows to %v, want flow 4", f, got)
			}
		}
	})

	t.Run("per aor", func(t *testing.T) {
		in := &Instances{Clock: c, PerAOR: 2}
		b := outbound(c, "alice", "<urn:uuid:1>", wsFlow(1))
		b.Expires = c.Now().Add(time.Minute) // lapses first
		in.Register(b)
		in.Register(outbound(c, "alice", "<urn:uuid:2>", wsFlow(2)))
		in.Register(outbound(c, "alice", "<urn:uuid:3>", wsFlow(3)))
		if st := in.Stats(); st.Instances != 2 || st.Refused != 0 {
			t.Fatalf("stats %+v, want 2 instances", st)
		}
		// Instance 1 was forgotten: its flow no longer moves anywhere.
		if _, moved := in.Register(outbound(c, "alice", "<urn:uuid:1>", wsFlow(4))); moved {
			t.Error("a forgotten instance moved")
		}
		if _, moved := in.Register(outbound(c, "alice", "<urn:uuid:3>", wsFlow(5))); !moved {
			t.Error("a kept instance did not move")
		}
	})

	t.Run("in all", func(t *testing.T) {
		in := &Instances{Clock: c, Max: 3}
		for i := range 5 {
			in.Register(outbound(c, fmt.Sprintf("user%d", i), "<urn:uuid:x>", wsFlow(uint64(10+i))))
		}
		st := in.Stats()
		if st.Instances != 3 || st.Refused != 2 {
			t.Fatalf("stats %+v, want 3 instances and 2 refused", st)
		}
		if _, moved := in.Register(outbound(c, "user4", "<urn:uuid:x>", wsFlow(20))); moved {
			t.Error("a refused instance moved")
		}
		if _, moved := in.Register(outbound(c, "user0", "<urn:uuid:x>", wsFlow(21))); !moved {
			t.Error("a followed instance did not move")
		}
	})
}
