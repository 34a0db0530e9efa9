package dialog

import (
	"sync"

	"github.com/switchboard/switchboard/sip"
)

// Forks tracks the dialogs created by the responses to one dialog-creating
// request this side sent, typically an INVITE that a proxy may fork to
// several phones (RFC 3261 §12.1.2, §13.2.2.4). Each To tag gets its own
// dialog: several early ones may exist at once; the first 2xx confirms its
// dialog and ends the others; a 2xx from any other fork, early or not, is an
// extra answer the caller must acknowledge and then end with a BYE.
//
// A Forks is safe for concurrent use.
type Forks struct {
	o *origin

	mu     sync.Mutex
	byID   map[ID]*Dialog
	order  []*Dialog
	winner *Dialog
	extra  map[*Dialog]bool
}

// ForkResult reports what a response did in [Forks.ReceiveResponse].
type ForkResult struct {
	// Dialog is the dialog the response belongs to; nil when there is
	// nothing to do with it: 100 Trying, a provisional response without To
	// tag, a failure response, a provisional response once the request has
	// been answered or on a fork whose early dialog has ended.
	Dialog *Dialog
	// Created is set when the response created Dialog.
	Created bool
	// Extra is set for a 2xx from a fork other than the one whose 2xx came
	// first, and for its retransmissions. Acknowledge it
	// ([Dialog.NewAck]), then end Dialog with a BYE
	// ([Dialog.NewRequest]), RFC 3261 §13.2.2.4.
	Extra bool
	// Ended lists the early dialogs the response terminated: the other
	// forks when the first 2xx arrives, every early dialog on a failure
	// response. Forget them (remove them from any [Set]).
	Ended []*Dialog
}

// NewForks returns a tracker for the dialogs created by responses to req,
// the INVITE, SUBSCRIBE or REFER this side sent, with its From tag. req is
// read once; it is not kept. A request sent again with credentials after a
// 401 or 407 has a new CSeq: it needs a new Forks.
func NewForks(req *sip.Request) (*Forks, error) {
	o, err := newOrigin(req)
	if err != nil {
		return nil, err
	}
	return &Forks{o: o, byID: make(map[ID]*Dialog), extra: make(map[*Dialog]bool)}, nil
}

// ReceiveResponse routes a response to the tracked request to its fork's
// dialog, creating the dialog for a new To tag (see [ForkResult]). An error
// wrapping [ErrMismatch] means res answers another request; [ErrMalformed],
// that the response could not create or update its dialog.
//
// Every 2xx that reaches the caller must be acknowledged, a retransmitted
// one included (RFC 6026 passes them up): Dialog is set for each of them.
func (f *Forks) ReceiveResponse(res *sip.Response) (ForkResult, error) {
	if err := f.o.matches(res); err != nil {
		return ForkResult{}, err
	}
	code := res.StatusCode
	if code >= 300 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return ForkResult{Ended: f.endEarly()}, nil
	}
	tag := res.To().Tag()
	success := code >= 200
	if !success && !createsWith(f.o.method, code, tag) {
		return ForkResult{}, nil
	}
	id := ID{CallID: f.o.callID, LocalTag: f.o.localTag, RemoteTag: tag}

	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.byID[id]
	switch {
	case d != nil && (d == f.winner || f.extra[d]):
		// A confirmed fork: a retransmitted 2xx to acknowledge again, or a
		// late provisional response that changes nothing.
		if !success {
			return ForkResult{}, nil
		}
		return ForkResult{Dialog: d, Extra: f.extra[d]}, nil
	case d != nil && f.winner == nil && d.State() == Early:
		if err := d.ReceiveResponse(res); err != nil {
			return ForkResult{Dialog: d}, err
		}
		r := ForkResult{Dialog: d}
		if success {
			f.winner = d
			r.Ended = f.endEarly()
		}
		return r, nil
	case !success && (d != nil || f.winner != nil):
		// A provisional response from a fork whose early dialog has ended,
		// or that is new after the answer: nothing to track.
		return ForkResult{}, nil
	}
	// A new fork, or a 2xx from a fork without a live early dialog: a new
	// dialog, early or confirmed; the first confirmed one wins.
	nd, err := f.o.dialog(res)
	if err != nil {
		return ForkResult{}, err
	}
	f.byID[id] = nd
	f.order = append(f.order, nd)
	r := ForkResult{Dialog: nd, Created: true}
	switch {
	case !success:
	case f.winner == nil:
		f.winner = nd
		r.Ended = f.endEarly()
	default:
		f.extra[nd] = true
		r.Extra = true
	}
	return r, nil
}

// endEarly terminates every early dialog and returns them. f.mu is held.
func (f *Forks) endEarly() []*Dialog {
	var ended []*Dialog
	for _, d := range f.order {
		d.mu.Lock()
		if d.state == Early {
			d.state = Terminated
			ended = append(ended, d)
		}
		d.mu.Unlock()
	}
	return ended
}

// Terminate ends every early dialog and returns them: call it when the
// transaction of the request ends without a final response (Timer B or C
// fired), or when the caller gives up on the request. Confirmed dialogs are
// left alone. A 2xx that arrives later still makes a dialog, which the
// caller acknowledges and ends with a BYE if it no longer wants it.
func (f *Forks) Terminate() []*Dialog {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.endEarly()
}

// Confirmed returns the dialog of the first 2xx, or nil before it.
func (f *Forks) Confirmed() *Dialog {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.winner
}

// Dialogs returns every dialog created so far, in order of creation.
func (f *Forks) Dialogs() []*Dialog {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Dialog(nil), f.order...)
}
