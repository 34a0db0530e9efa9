package cluster_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/cluster"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/redistest"
)

var ctx = context.Background()

const (
	nodeA = "sip:127.0.0.1:5061;transport=tcp"
	nodeB = "sip:127.0.0.1:5062;transport=tcp"
)

func join(t *testing.T, client redis.UniversalClient, node string, configure ...func(*cluster.Options)) *cluster.Membership {
	t.Helper()
	o := cluster.Options{Client: client, Node: node}
	for _, f := range configure {
		f(&o)
	}
	m, err := cluster.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func beat(t *testing.T, ms ...*cluster.Membership) {
	t.Helper()
	for _, m := range ms {
		if err := m.Beat(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNodesSeeEachOtherAndLeave(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	a, b := join(t, client, nodeA), join(t, client, nodeB)
	if b.Alive(nodeA, time.Time{}) {
		t.Fatal("a node never seen is alive")
	}
	beat(t, a, b)
	if !b.Alive(nodeA, time.Time{}) || !b.Alive(nodeB, time.Time{}) {
		t.Errorf("b sees %v", b.Peers())
	}
	beat(t, a)
	if got := a.Peers(); len(got) != 1 || got[0] != nodeB {
		t.Errorf("a sees %v, want b", got)
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	beat(t, b)
	if b.Alive(nodeA, time.Time{}) {
		t.Error("a node that left is alive")
	}
	if s := b.Stats(); s.Peers != 0 || !s.Healthy || s.Beats != 2 {
		t.Errorf("b's stats %+v", s)
	}
}

// TestDeadNodeExpires: a node that stops beating is gone for the others
// once Redis expired its key, which takes TTL.
func TestDeadNodeExpires(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	if err := client.ConfigSet(ctx, "notify-keyspace-events", "Ex").Err(); err != nil {
		t.Fatal(err)
	}
	sub := client.Subscribe(ctx, "__keyevent@0__:expired")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	a := join(t, client, nodeA, func(o *cluster.Options) { o.TTL = 300 * time.Millisecond })
	b := join(t, client, nodeB)
	beat(t, a, b)
	if !b.Alive(nodeA, time.Time{}) {
		t.Fatal("a not alive")
	}
	select {
	case m := <-sub.Channel():
		if m.Payload != "switchboard:node:"+nodeA {
			t.Fatalf("expired %q", m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a's key did not expire")
	}
	beat(t, b)
	if b.Alive(nodeA, time.Time{}) {
		t.Error("a dead node is alive")
	}
}

// TestRejoinAfterOutageAndRestart: a beat that reaches Redis after
// failing, or that finds Redis emptied, calls Rejoined; the secret is put
// back, so a node that starts later gets the same one. The other nodes,
// whose keys Redis lost, stay alive until the next beat, by which they
// have beaten again.
func TestRejoinAfterOutageAndRestart(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	secret, err := cluster.Secret(ctx, client, "")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := cluster.Secret(ctx, client, ""); err != nil || !bytes.Equal(again, secret) {
		t.Fatalf("a second node got another secret: %v", err)
	}
	var rejoins atomic.Int32
	a := join(t, client, nodeA, func(o *cluster.Options) {
		o.Secret = secret
		o.Rejoined = func(context.Context) { rejoins.Add(1) }
	})
	b := join(t, client, nodeB)
	beat(t, b)
	beat(t, a) // joining is rejoining with nothing to write back
	beat(t, a)
	if !a.Alive(nodeB, time.Time{}) {
		t.Fatal("b not alive")
	}
	if n := rejoins.Load(); n != 1 {
		t.Fatalf("%d rejoins after two beats, want 1", n)
	}

	srv.Kill()
	if err := a.Beat(ctx); err == nil {
		t.Fatal("a beat without Redis succeeded")
	}
	if a.Healthy() {
		t.Error("healthy without Redis")
	}
	srv.Restart()
	beat(t, a)
	if n := rejoins.Load(); n != 2 || !a.Healthy() {
		t.Errorf("%d rejoins after the outage (healthy %v), want 2", n, a.Healthy())
	}
	if !a.Alive(nodeB, time.Time{}) {
		t.Error("b, alive before Redis restarted, is gone at the first beat after it")
	}
	beat(t, a)
	if a.Alive(nodeB, time.Time{}) {
		t.Error("b, which did not beat since Redis restarted, is alive after the second beat")
	}
	if got, err := cluster.Secret(ctx, client, ""); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("after Redis restarted empty, a new node got another secret (%v)", err)
	}

	// Emptied while the node beat on: the key is gone at the next beat.
	if err := client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	beat(t, a)
	if n := rejoins.Load(); n != 3 {
		t.Errorf("%d rejoins after a flush, want 3", n)
	}
}

// TestStartLeave: the beats run until Leave, which ends their goroutine.
func TestStartLeave(t *testing.T) {
	leakcheck.Check(t, 5*time.Second, leakcheck.Running("gateway/cluster."))
	srv := redistest.Start(t)
	client := srv.Client(t)
	b := join(t, client, nodeB)
	joined := make(chan struct{})
	var once atomic.Bool
	a := join(t, client, nodeA, func(o *cluster.Options) {
		o.Rejoined = func(context.Context) {
			if once.CompareAndSwap(false, true) {
				close(joined)
			}
		}
	})
	a.Start(ctx)
	select {
	case <-joined:
	case <-time.After(10 * time.Second):
		t.Fatal("no beat")
	}
	beat(t, b)
	if !b.Alive(nodeA, time.Time{}) {
		t.Error("a not alive while beating")
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	beat(t, b)
	if b.Alive(nodeA, time.Time{}) {
		t.Error("a alive after Leave")
	}
}

// TestAliveByBindingTime: a binding made by a node after this one's last
// beat proves that node alive (it joined since), one made before its
// last beat does not outlive the beat's verdict.
func TestAliveByBindingTime(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := join(t, client, nodeB, func(o *cluster.Options) { o.Clock = clk })
	if b.Alive(nodeA, clk.Now().Add(time.Second)) {
		t.Error("a node is alive before this one ever beat")
	}
	beat(t, b)
	lastBeat := clk.Now()
	clk.Advance(time.Second)
	if !b.Alive(nodeA, clk.Now()) {
		t.Error("a node that stored a binding after the last beat is not alive")
	}
	if b.Alive(nodeA, lastBeat) || b.Alive(nodeA, lastBeat.Add(-time.Second)) {
		t.Error("a node absent at the last beat is alive for a binding made before it")
	}
	a := join(t, client, nodeA)
	beat(t, a, b)
	if !b.Alive(nodeA, time.Time{}) {
		t.Error("a beating node is not alive")
	}
}
