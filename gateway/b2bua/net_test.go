package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// testNet is an in-memory SIP network between the nodes of a test: Send
// serialises a message and queues it; one goroutine, owned by the network,
// parses each message afresh for its receiver, sets its Source as a
// transport would and hands it over. Nodes are found by transport and
// address; a WebSocket message carries the flow of the connection.
type testNet struct {
	mu     sync.Mutex
	nodes  map[nodeKey]*testNode
	queue  []delivery
	closed bool
	trace  func(string)
	// observe, when set, sees every message delivered, and whereto.
	observe func(to string, msg sip.Message)

	wake chan struct{}
	done chan struct{}
}

type nodeKey struct {
	transport string
	addr      netip.AddrPort
}

type delivery struct {
	data     []byte
	src      sip.Addr
	from, to *testNode
}

// wsFlow is the flow id of every WebSocket connection of the tests: one
// browser per test.
const wsFlow = 7

func newTestNet() *testNet {
	n := &testNet{
		nodes: make(map[nodeKey]*testNode),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	go n.run()
	return n
}

// testNode is one element of the network: a transaction.Sender, and the
// function that receives what is sent to it.
type testNode struct {
	net   *testNet
	name  string
	addrs []sip.Addr
	recv  func(sip.Message)
}

func (n *testNet) addNode(name string, addrs ...sip.Addr) *testNode {
	nd := &testNode{net: n, name: name, addrs: addrs}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.nodes[nodeKey{a.Transport, a.AddrPort}] = nd
	}
	return nd
}

func (nd *testNode) addr(tr string) sip.Addr {
	for _, a := range nd.addrs {
		if strings.EqualFold(a.Transport, tr) {
			return a
		}
	}
	return sip.Addr{}
}

var errUnreachable = errors.New("test network: no node at destination")

// Send implements transaction.Sender.
func (nd *testNode) Send(_ context.Context, msg sip.Message, dst sip.Addr) error {
	data := msg.AppendTo(nil)
	n := nd.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("test network: closed")
	}
	to := n.nodes[nodeKey{strings.ToUpper(dst.Transport), dst.AddrPort}]
	src := nd.addr(dst.Transport)
	if to == nil || !src.IsValid() {
		return fmt.Errorf("%w: %s from %s", errUnreachable, dst, nd.name)
	}
	if src.Transport == sip.WS {
		src.Flow = wsFlow
	}
	n.queue = append(n.queue, delivery{data: data, src: src, from: nd, to: to})
	select {
	case n.wake <- struct{}{}:
	default:
	}
	return nil
}

func (n *testNet) run() {
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
		trace, observe := n.trace, n.observe
		n.mu.Unlock()

		msg, err := sip.ParseMessage(d.data)
		if err != nil {
			panic(fmt.Sprintf("test network: %s sent an unparsable message: %v\n%s", d.from.name, err, d.data))
		}
		transport.SetSource(msg, d.src)
		if trace != nil {
			trace(d.from.name + " -> " + d.to.name + ": " + firstLine(d.data))
		}
		if observe != nil {
			observe(d.to.name, msg)
		}
		if d.to.recv != nil {
			d.to.recv(msg)
		}
	}
}

func firstLine(b []byte) string {
	s := string(b)
	if i := strings.Index(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}

func (n *testNet) close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	<-n.done
}

// stampVia is the Via stamping of a node: transport.Layer.StampVia's
// shape.
func (nd *testNode) stampVia(req *sip.Request, dst sip.Addr) (sip.Via, error) {
	src := nd.addr(dst.Transport)
	if !src.IsValid() {
		return sip.Via{}, fmt.Errorf("%w: %s has no %s address", errUnreachable, nd.name, dst.Transport)
	}
	v := sip.Via{
		Transport: src.Transport,
		Host:      src.AddrPort.Addr().String(),
		Port:      int(src.AddrPort.Port()),
		Params:    sip.Params(";branch=" + sip.NewBranch() + ";rport"),
	}
	req.PrependVia(v)
	return v, nil
}
