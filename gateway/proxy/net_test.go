package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// waitLimit bounds every wait of the tests: a test that waits longer has
// failed, not become slow.
const waitLimit = 5 * time.Second

var (
	errUnreachable = errors.New("test network: no node at destination")
	errFlowClosed  = errors.New("test network: flow closed")
	errCannotDial  = errors.New("test network: websocket cannot dial")
)

// network is an in-memory SIP network between the nodes of a test (the
// proxy, phones, browsers). Send serialises a message and queues it; one
// goroutine, owned by the network, parses each message afresh for its
// receiver, sets its Source as a transport would (with received and rport
// in a request's top Via) and hands it to the receiver. Connections
// (flows) join two nodes over a connection-oriented transport; a WebSocket
// node can only be reached over its flow, as in life.
type network struct {
	mu       sync.Mutex
	nodes    map[nodeKey]*node
	flows    map[uint64]*flow
	nextFlow uint64
	queue    []delivery
	closed   bool
	record   bool
	log      recorder[delivered]

	wake chan struct{}
	done chan struct{}
}

type nodeKey struct {
	transport string
	addr      netip.AddrPort
}

// flow is a connection: ends[i] is the address of nodes[i].
type flow struct {
	ends  [2]sip.Addr
	nodes [2]*node
}

type delivery struct {
	data     []byte
	src      sip.Addr // as the receiver sees it
	from, to *node
}

// delivered is one message as it reached its receiver.
type delivered struct {
	from, to string
	src      sip.Addr
	data     []byte
}

// msg parses the logged message: every reader gets its own copy.
func (d delivered) msg() sip.Message {
	m, err := sip.ParseMessage(d.data)
	if err != nil {
		panic(err) // it parsed once already
	}
	transport.SetSource(m, d.src)
	return m
}

func (d delivered) String() string { return d.from + " -> " + d.to + ": " + label(d.msg()) }

func newNetwork() *network {
	n := &network{
		nodes:  make(map[nodeKey]*node),
		flows:  make(map[uint64]*flow),
		record: true,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	n.log.init()
	go n.run()
	return n
}

// node is one element of the network: a Sender, and a receive function.
type node struct {
	net   *network
	name  string
	addrs []sip.Addr
	recv  func(sip.Message)
}

// addNode adds a node listening on addrs; set recv before sending to it.
func (n *network) addNode(name string, addrs ...sip.Addr) *node {
	nd := &node{net: n, name: name, addrs: addrs}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.nodes[nodeKey{a.Transport, a.AddrPort}] = nd
	}
	return nd
}

// connect opens a connection from client (its address of transport tr) to
// server and returns its flow id.
func (n *network) connect(client *node, tr string, server sip.Addr) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	srv := n.nodes[nodeKey{server.Transport, server.AddrPort}]
	n.nextFlow++
	n.flows[n.nextFlow] = &flow{
		ends:  [2]sip.Addr{client.addr(tr), server},
		nodes: [2]*node{client, srv},
	}
	return n.nextFlow
}

func (nd *node) addr(tr string) sip.Addr {
	for _, a := range nd.addrs {
		if strings.EqualFold(a.Transport, tr) {
			return a
		}
	}
	return sip.Addr{}
}

// Send implements transaction.Sender.
func (nd *node) Send(_ context.Context, msg sip.Message, dst sip.Addr) error {
	data := msg.AppendTo(nil)
	n := nd.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("test network: closed")
	}
	d := delivery{data: data, from: nd}
	switch {
	case dst.Flow != 0:
		f := n.flows[dst.Flow]
		if f == nil {
			return fmt.Errorf("%w: %d", errFlowClosed, dst.Flow)
		}
		i := 0
		if f.nodes[1] == nd {
			i = 1
		} else if f.nodes[0] != nd {
			return fmt.Errorf("%w: %s is not an end of flow %d", errFlowClosed, nd.name, dst.Flow)
		}
		d.src, d.to = f.ends[i], f.nodes[1-i]
		d.src.Flow = dst.Flow
	case dst.Transport == sip.WS || dst.Transport == sip.WSS:
		return fmt.Errorf("%w: %s", errCannotDial, dst)
	default:
		d.to = n.nodes[nodeKey{strings.ToUpper(dst.Transport), dst.AddrPort}]
		d.src = nd.addr(dst.Transport)
		if d.to == nil || !d.src.IsValid() {
			return fmt.Errorf("%w: %s from %s", errUnreachable, dst, nd.name)
		}
	}
	n.queue = append(n.queue, d)
	select {
	case n.wake <- struct{}{}:
	default:
	}
	return nil
}

func (n *network) run() {
	defer close(n.done)
	for {
		n.mu.Lock()
		for len(n.queue) == 0 && !n.closed {
			n.mu.Unlock()
			<-n.wake
			n.mu.Lock()
		}
		if n.closed {
			n.mu.Unlock()
			return
		}
		d := n.queue[0]
		n.queue[0] = delivery{}
		n.queue = n.queue[1:]
		record := n.record
		n.mu.Unlock()

		msg, err := sip.ParseMessage(d.data)
		if err != nil {
			panic(fmt.Sprintf("test network: %s sent an unparsable message: %v\n%s", d.from.name, err, d.data))
		}
		transport.SetSource(msg, d.src)
		if req, ok := msg.(*sip.Request); ok {
			transport.StampReceived(req)
		}
		if record {
			n.log.add(delivered{from: d.from.name, to: d.to.name, src: d.src, data: msg.AppendTo(nil)})
		}
		if d.to.recv != nil {
			d.to.recv(msg)
		}
	}
}

// close stops the network; messages still queued are lost.
func (n *network) close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	<-n.done
}

// recorder keeps items in order for tests to wait for.
type recorder[T any] struct {
	mu      sync.Mutex
	items   []T
	taken   []bool
	changed chan struct{}
}

func (r *recorder[T]) init() { r.changed = make(chan struct{}) }

func (r *recorder[T]) add(x T) {
	r.mu.Lock()
	r.items = append(r.items, x)
	r.taken = append(r.taken, false)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// wait returns the first item not taken yet that matches, and takes it.
func (r *recorder[T]) wait(t testing.TB, what string, match func(T) bool) T {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i, x := range r.items {
			if !r.taken[i] && match(x) {
				r.taken[i] = true
				r.mu.Unlock()
				return x
			}
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			var zero T
			t.Fatalf("timed out waiting for %s; have %v", what, r.all())
			return zero
		}
	}
}

// all returns every item so far.
func (r *recorder[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.items...)
}

// label names a message: "INVITE", "180 INVITE".
func label(m sip.Message) string {
	switch m := m.(type) {
	case *sip.Request:
		return m.Method
	case *sip.Response:
		return fmt.Sprintf("%d %s", m.StatusCode, m.CSeq().Method)
	}
	return "?"
}
