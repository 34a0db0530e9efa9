// Package sipnet is an in-memory SIP network for tests: the proxy, the
// B2BUA, phones and browsers of a test exchange messages through it with
// no sockets, and every message crosses it as bytes, as on a wire.
//
// A Node is one element (a transaction.Sender, and a function that
// receives what is sent to it) with an address per transport. Send
// serialises a message and queues it; one goroutine, owned by the Network
// and stopped by Close, parses each message afresh for its receiver, sets
// its Source as a transport would (with received and rport in a request's
// top Via, RFC 3581) and hands it over, in the order sent. Connect opens a
// connection (a flow) between two nodes: what is sent with the flow's id
// reaches the other end with that id in its Source, until Disconnect
// closes it. A WebSocket node can be reached only over its flow, as in
// life: a server cannot dial a browser. Log keeps every message
// delivered, for tests to wait for.
package sipnet

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

// Errors of Send.
var (
	ErrUnreachable = errors.New("sipnet: no node at destination")
	ErrNoFlow      = errors.New("sipnet: no such flow")
	ErrCannotDial  = errors.New("sipnet: websocket cannot dial")
	ErrClosed      = errors.New("sipnet: network closed")
)

// Network is an in-memory SIP network. Make one with New and Close it.
type Network struct {
	// Log has every message delivered, in order, as its receiver got it.
	Log Recorder[Delivery]

	mu       sync.Mutex
	nodes    map[nodeKey]*Node
	flows    map[uint64]*flow
	nextFlow uint64
	queue    []queued
	closed   bool
	noLog    bool

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
	nodes [2]*Node
}

type queued struct {
	data     []byte
	src      sip.Addr // as the receiver sees it
	from, to *Node
}

// New starts a network; Close stops it.
func New() *Network {
	n := &Network{
		nodes: make(map[nodeKey]*Node),
		flows: make(map[uint64]*flow),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	go n.run()
	return n
}

// Node is one element of a network: a transaction.Sender, and Recv.
type Node struct {
	// Recv receives every message sent to the node, on the network's
	// goroutine; set it before anything is sent to the node.
	Recv func(sip.Message)

	net   *Network
	name  string
	addrs []sip.Addr
}

// AddNode adds a node named name listening on addrs.
func (n *Network) AddNode(name string, addrs ...sip.Addr) *Node {
	nd := &Node{net: n, name: name, addrs: addrs}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.nodes[nodeKey{strings.ToUpper(a.Transport), a.AddrPort}] = nd
	}
	return nd
}

// Connect opens a connection from client, from its address of transport
// tr, to the node at server, and returns the flow's id: 1, 2, … in the
// order of the calls.
func (n *Network) Connect(client *Node, tr string, server sip.Addr) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	srv := n.nodes[nodeKey{strings.ToUpper(server.Transport), server.AddrPort}]
	n.nextFlow++
	n.flows[n.nextFlow] = &flow{
		ends:  [2]sip.Addr{client.Addr(tr), server},
		nodes: [2]*Node{client, srv},
	}
	return n.nextFlow
}

// Disconnect closes the connection flow, as a dropped WebSocket or TCP
// connection: Send over it fails with ErrNoFlow from now on.
func (n *Network) Disconnect(flow uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.flows, flow)
}

// SetLog turns the recording of deliveries on (as after New) or off: a
// benchmark sends more messages than a log should keep.
func (n *Network) SetLog(on bool) {
	n.mu.Lock()
	n.noLog = !on
	n.mu.Unlock()
}

// Name returns the node's name, as the log shows it.
func (nd *Node) Name() string { return nd.name }

// Addr returns the node's address of transport tr; the zero Addr if it
// has none.
func (nd *Node) Addr(tr string) sip.Addr {
	for _, a := range nd.addrs {
		if strings.EqualFold(a.Transport, tr) {
			return a
		}
	}
	return sip.Addr{}
}

// Send implements transaction.Sender: over dst's flow when it names one,
// else to the node at dst, from the sender's address of dst's transport.
func (nd *Node) Send(_ context.Context, msg sip.Message, dst sip.Addr) error {
	data := msg.AppendTo(nil)
	n := nd.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	q := queued{data: data, from: nd}
	switch {
	case dst.Flow != 0:
		f := n.flows[dst.Flow]
		if f == nil {
			return fmt.Errorf("%w: %d", ErrNoFlow, dst.Flow)
		}
		i := 0
		if f.nodes[1] == nd {
			i = 1
		} else if f.nodes[0] != nd {
			return fmt.Errorf("%w: %s is not an end of flow %d", ErrNoFlow, nd.name, dst.Flow)
		}
		q.src, q.to = f.ends[i], f.nodes[1-i]
		q.src.Flow = dst.Flow
	case strings.EqualFold(dst.Transport, sip.WS) || strings.EqualFold(dst.Transport, sip.WSS):
		return fmt.Errorf("%w: %s", ErrCannotDial, dst)
	default:
		q.to = n.nodes[nodeKey{strings.ToUpper(dst.Transport), dst.AddrPort}]
		q.src = nd.Addr(dst.Transport)
	}
	if q.to == nil || !q.src.IsValid() {
		return fmt.Errorf("%w: %s from %s", ErrUnreachable, dst, nd.name)
	}
	n.queue = append(n.queue, q)
	select {
	case n.wake <- struct{}{}:
	default:
	}
	return nil
}

// StampVia puts a new top Via on req for sending it to dst, naming the
// node's address of dst's transport, with a fresh branch and rport: what
// the transport layer's StampVia does.
func (nd *Node) StampVia(req *sip.Request, dst sip.Addr) (sip.Via, error) {
	src := nd.Addr(dst.Transport)
	if !src.IsValid() {
		return sip.Via{}, fmt.Errorf("%w: %s has no %s address", ErrUnreachable, nd.name, dst.Transport)
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

func (n *Network) run() {
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
		q := n.queue[0]
		n.queue[0] = queued{}
		n.queue = n.queue[1:]
		record := !n.noLog
		n.mu.Unlock()

		msg, err := sip.ParseMessage(q.data)
		if err != nil {
			panic(fmt.Sprintf("sipnet: %s sent an unparsable message: %v\n%s", q.from.name, err, q.data))
		}
		transport.SetSource(msg, q.src)
		if req, ok := msg.(*sip.Request); ok {
			transport.StampReceived(req)
		}
		if record {
			n.Log.Add(Delivery{From: q.from.name, To: q.to.name, Source: q.src, Data: msg.AppendTo(nil)})
		}
		if q.to.Recv != nil {
			q.to.Recv(msg)
		}
	}
}

// Close stops the network and waits for its goroutine; messages still
// queued are lost, and Send fails from now on.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	<-n.done
}

// Delivery is one message as it reached its receiver.
type Delivery struct {
	From, To string   // the nodes' names
	Source   sip.Addr // as the receiver saw it
	Data     []byte   // the message as the receiver got it (with received, rport)
}

// Message parses the message: every reader gets its own copy.
func (d Delivery) Message() sip.Message {
	m, err := sip.ParseMessage(d.Data)
	if err != nil {
		panic(err) // it parsed once already
	}
	transport.SetSource(m, d.Source)
	return m
}

// String is "alice -> proxy: INVITE".
func (d Delivery) String() string { return d.From + " -> " + d.To + ": " + Label(d.Message()) }

// Label names a message: "INVITE", "180 INVITE".
func Label(m sip.Message) string {
	switch m := m.(type) {
	case *sip.Request:
		return m.Method
	case *sip.Response:
		return fmt.Sprintf("%d %s", m.StatusCode, m.CSeq().Method)
	}
	return "?"
}
