package proxy

import (
	"container/list"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// Defaults of the dialog table.
const (
	// DefaultMaxDialogs bounds the dialogs the proxy record-routes at once.
	DefaultMaxDialogs = 50000
	// DefaultDialogLifetime is how long a dialog stays known after its
	// last in-dialog request: twelve hours, as Kamailio's dialog module
	// keeps one. Clients that refresh sessions (RFC 4028) keep theirs far
	// longer; one that sends nothing for longer must authenticate again.
	DefaultDialogLifetime = 12 * time.Hour
	// maxCallees bounds the early dialogs (To tags) of one request: one
	// per branch of a fork, and a UAS may answer with several.
	maxCallees = 2 * DefaultMaxTargets
)

// errDialogsFull is returned when the table holds MaxDialogs dialogs that
// are all confirmed: the request that would start one more gets 503.
var errDialogsFull = errors.New("proxy: dialog table full")

// dialogKey names a dialog by its Call-ID and the tag of the caller: the
// From tag of the request that created it.
type dialogKey struct {
	callID, callerTag string
}

// side is where requests for one party of a dialog go: its remote target
// (the Contact it sent), the connection it is reached over, or the next
// proxy on its path. A request that rides one of our Record-Route stamps
// is forwarded only to the side the stamp points to, and only to what the
// dialog recorded for it there.
type side struct {
	target sip.URI  // the party's Contact; zero when it sent none
	flow   sip.Addr // the connection that reaches it, when it is one
	// route is the next Route beyond us towards it; nil when none, as
	// nearly always: a pointer, not a URI, takes 112 bytes less from
	// each side of each dialog, of which the table keeps tens of
	// thousands under load. The side owns it (hop makes it), so
	// detach rewrites its strings in place.
	route *sip.URI
	// user is the user of ours the party authenticated (the caller) or
	// registered (a callee) as; "" for a trunk or a stranger. Its REFERs
	// in the dialog are trusted as that user's.
	user string
}

// dialogState is what the proxy remembers of a dialog it record-routed.
type dialogState struct {
	key    dialogKey
	caller side
	// The callees, by their tags: the first in line, since nearly every
	// dialog has one (a map and a side of its own were two allocations
	// and some 600 bytes of each call), the others of a fork in more.
	firstTag string
	first    side
	more     map[string]*side
	// confirmed: a 2xx arrived; the dialog lives DialogLifetime past its
	// last request rather than as long as the initial transaction.
	confirmed bool
	expires   time.Time
	early     *list.Element // in dialogs.early while unconfirmed
	ended     *list.Element // in dialogs.ended once a BYE passed
}

// dialogs is the proxy's table of the dialogs it record-routed: what makes
// a replayed Record-Route stamp worthless. It is bounded: beyond its
// capacity the oldest ended dialog (one a BYE passed, kept a while for
// requests that crossed it) is forgotten, else the oldest early one, and
// when every dialog is confirmed and under way no new one starts. Ended
// dialogs go first because at a few thousand calls a second those of the
// last CancelTimeout alone would fill the table and refuse new calls.
type dialogs struct {
	mu        sync.Mutex
	m         map[dialogKey]*dialogState
	early     list.List // of *dialogState, oldest first
	ended     list.List // of *dialogState, by when their BYE passed
	max       int
	lifetime  time.Duration
	lastSweep time.Time

	evicted, refused, mismatched uint64
}

// DialogStats counts the work of the proxy's dialog table, for metrics.
type DialogStats struct {
	// Dialogs is the number of dialogs known now.
	Dialogs int
	// Evicted counts early dialogs forgotten to make room (ended ones
	// forgotten to make room are not counted: they were over).
	Evicted uint64
	// Refused counts dialogs not started because the table was full of
	// confirmed ones.
	Refused uint64
	// Mismatched counts requests that carried a Record-Route entry of
	// ours whose stamp does not verify (another Call-ID, made-up tags, a
	// forgery) or whose dialog does not send them where they go (a
	// forgotten dialog, another destination): they were authorised as
	// out-of-dialog requests.
	Mismatched uint64
}

// hop returns u as a side's route: nil when u is zero.
func hop(u sip.URI) *sip.URI {
	if u.Scheme == "" {
		return nil
	}
	return &u
}

func newDialogs(max int, lifetime time.Duration) *dialogs {
	return &dialogs{m: make(map[dialogKey]*dialogState), max: max, lifetime: lifetime}
}

// sweepEvery is how often expired dialogs are dropped; they are never
// used in between.
const sweepEvery = 30 * time.Second

// open starts the dialog of an initial request, whose caller is reached as
// caller says. It lives until until, unless a 2xx confirms it. A dialog
// already under way with the same key is left as it is.
func (d *dialogs) open(key dialogKey, caller side, now, until time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sweep(now)
	d.dropEnded(now)
	if dl, ok := d.m[key]; ok && dl.expires.After(now) {
		// A dialog of this Call-ID and tag is under way: whoever sends
		// its initial request again cannot move its caller's side, or a
		// callee that knows both could point it at any host.
		return nil
	}
	if len(d.m) >= d.max && now.Sub(d.lastSweep) >= time.Second {
		d.sweepAll(now)
	}
	if len(d.m) >= d.max {
		if front := d.ended.Front(); front != nil {
			d.forget(front.Value.(*dialogState))
		} else if front := d.early.Front(); front != nil {
			d.forget(front.Value.(*dialogState))
			d.evicted++
		} else {
			d.refused++
			return errDialogsFull
		}
	}
	caller.detach(&key.callID, &key.callerTag)
	dl := &dialogState{key: key, caller: caller, expires: until}
	dl.early = d.early.PushBack(dl)
	d.m[key] = dl
	return nil
}

// answered records the side of a callee that answered the dialog's initial
// request with a To tag: provisionally (1xx) or finally (2xx), when the
// dialog is confirmed. A final non-2xx is not recorded: the early dialog
// ends with it.
func (d *dialogs) answered(key dialogKey, tag string, callee side, confirmed bool, now, until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dl, ok := d.m[key]
	if !ok || tag == "" {
		return
	}
	if s := dl.callee(tag); s != nil {
		if callee.target.Scheme != "" && callee.target != s.target {
			s.target = callee.target
			ps := uriStrings(&s.target)
			detach(ps[:]...)
		}
		if callee.flow.IsValid() {
			s.flow = callee.flow
		}
	} else if dl.firstTag == "" {
		dl.first = callee
		dl.first.detach(&tag)
		dl.firstTag = tag
	} else if 1+len(dl.more) < maxCallees {
		if dl.more == nil {
			dl.more = make(map[string]*side, 1)
		}
		c := callee
		c.detach(&tag)
		dl.more[tag] = &c
	}
	switch {
	case confirmed && !dl.confirmed:
		dl.confirmed = true
		if dl.early != nil {
			d.early.Remove(dl.early)
			dl.early = nil
		}
		if dl.ended == nil { // a BYE in the early dialog ended it
			dl.expires = now.Add(d.lifetime)
		}
	case !dl.confirmed && until.After(dl.expires):
		dl.expires = until
	}
}

// callee returns the side of the callee whose tag is tag, nil if none
// answered with it.
func (dl *dialogState) callee(tag string) *side {
	if tag != "" && tag == dl.firstTag {
		return &dl.first
	}
	return dl.more[tag]
}

// failed ends the dialog of an initial request that got a final non-2xx
// answer, unless a 2xx confirmed it meanwhile.
func (d *dialogs) failed(key dialogKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dl, ok := d.m[key]; ok && !dl.confirmed {
		d.forget(dl)
	}
}

// route checks a request that carries one of our Record-Route stamps
// against its dialog (§16.4 meets RFC 3261's "a proxy is not an open
// relay"): the stamp named its dialog and direction, and the request may
// only go where the dialog recorded the party of that side. dest is the
// connection to send it over, when the side has one; sender the user of
// ours the dialog recorded for the side that sent it. A match refreshes
// the dialog's lifetime. follow maps a recorded connection to the one
// that replaced it (a reconnect).
func (d *dialogs) route(r *sip.Request, rt *routing, now time.Time, follow func(sip.Addr) sip.Addr) (dest sip.Addr, sender string, ok bool) {
	key, calleeTag := rt.dialog, rt.calleeTag
	d.mu.Lock()
	defer d.mu.Unlock()
	dl, found := d.m[key]
	if !found || !dl.expires.After(now) {
		d.mismatched++
		return sip.Addr{}, "", false
	}
	to, from := &dl.caller, dl.callee(calleeTag)
	if rt.dir == toCallee {
		if to, from = from, &dl.caller; to == nil {
			d.mismatched++
			return sip.Addr{}, "", false
		}
	}
	if !to.admits(r, rt, follow) {
		d.mismatched++
		return sip.Addr{}, "", false
	}
	if dl.confirmed && dl.ended == nil {
		dl.expires = now.Add(d.lifetime)
	}
	if from != nil {
		sender = from.user
	}
	if rt.flow.IsValid() {
		return rt.flow, sender, true
	}
	return sip.Addr{}, sender, true
}

// replaced returns the party that an INVITE with Replaces rep, sent to
// ruri, must reach: of the confirmed dialog rep names, the party that is
// not the transferor, whose tag and dialog the Replaces came from. The
// Request-URI tells which one that is when it names a party (its Contact,
// or its user of ours, as a Refer-To does); else the tags do, as RFC 3891
// §3 orients them (to-tag is the recipient's). Some agents orient them by
// their INVITE's From and To instead, hence the Request-URI first.
func (d *dialogs) replaced(rep sip.Replaces, ruri *sip.URI, now time.Time) (side, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, tags := range [2][2]string{{rep.FromTag, rep.ToTag}, {rep.ToTag, rep.FromTag}} {
		dl, ok := d.m[dialogKey{rep.CallID, tags[0]}]
		if !ok || !dl.confirmed || !dl.expires.After(now) {
			continue
		}
		callee := dl.callee(tags[1])
		if callee == nil {
			continue
		}
		caller := &dl.caller
		switch {
		case ruri.Equal(&caller.target), caller.user != "" && ruri.User == caller.user:
			return *caller, true
		case ruri.Equal(&callee.target), callee.user != "" && ruri.User == callee.user:
			return *callee, true
		case tags[0] == rep.ToTag:
			return *caller, true
		default:
			return *callee, true
		}
	}
	return side{}, false
}

// admits reports whether r, its routes popped, goes to this side: to its
// remote target, through its next proxy if it has one, over its
// connection (or the one that replaced it) if the entry named one.
func (s *side) admits(r *sip.Request, rt *routing, follow func(sip.Addr) sip.Addr) bool {
	if rt.flow.IsValid() {
		recorded := follow(s.flow)
		if rt.flow.Flow != recorded.Flow || rt.flow.AddrPort != recorded.AddrPort {
			return false
		}
	}
	routes, err := r.Routes()
	if err != nil {
		return false
	}
	if len(routes) > 0 {
		return s.route != nil && routes[0].URI.Equal(s.route)
	}
	if s.route != nil {
		return false // the request would skip the side's proxy
	}
	if s.target.Scheme == "" {
		return rt.flow.IsValid() // no Contact to check: only the connection tells
	}
	return r.URI.Equal(&s.target)
}

// refreshed records a new remote target for one side of a dialog, after
// a target refresh (re-INVITE, UPDATE, SUBSCRIBE, NOTIFY) succeeded:
// callerSide tells whose Contact it is.
func (d *dialogs) refreshed(key dialogKey, calleeTag string, callerSide bool, target sip.URI) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dl, ok := d.m[key]
	if !ok {
		return
	}
	ps := uriStrings(&target)
	detach(ps[:]...)
	if callerSide {
		dl.caller.target = target
	} else if s := dl.callee(calleeTag); s != nil {
		s.target = target
	}
}

// ending gives a dialog whose BYE passed only the time its retransmissions
// and answers need, and makes it the first to go when the table is full.
func (d *dialogs) ending(key dialogKey, until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dl, ok := d.m[key]
	if !ok {
		return
	}
	if until.Before(dl.expires) {
		dl.expires = until
	}
	if dl.ended == nil {
		if dl.early != nil {
			d.early.Remove(dl.early)
			dl.early = nil
		}
		dl.ended = d.ended.PushBack(dl)
	}
}

// The table keeps its dialogs for hours, or for the seconds after their
// BYE, and at a few thousand calls a second those are tens of thousands:
// what it keeps must not be slices of the messages it was read from
// (their Call-ID, tags, Contact), or each dialog pins the text of its
// INVITE and of its 2xx, a kilobyte or two each with their SDP, which the
// heap of a call overload showed as most of what was alive. So it copies
// the strings it keeps, in one allocation per key and per side.

// detach makes the strings of s its own, and those that also points to
// (a dialog's key, a callee's tag), in the same allocation.
func (s *side) detach(also ...*string) {
	var none string
	a, b := &none, &none
	switch len(also) {
	case 1:
		a = also[0]
	case 2:
		a, b = also[0], also[1]
	}
	t := uriStrings(&s.target)
	ps := append(t[:], &s.user, a, b)
	if s.route != nil {
		rs := uriStrings(s.route)
		ps = append(ps, rs[:]...)
	}
	detach(ps...)
}

// uriStrings lists the strings of u.
func uriStrings(u *sip.URI) [7]*string {
	return [7]*string{&u.Scheme, &u.User, &u.Password, &u.Host, (*string)(&u.Params), &u.Headers, &u.Opaque}
}

// detach copies the strings ps point to into one new string, and points
// each at its part of it.
func detach(ps ...*string) {
	n := 0
	for _, p := range ps {
		n += len(*p)
	}
	if n == 0 {
		return
	}
	var b strings.Builder
	b.Grow(n)
	for _, p := range ps {
		b.WriteString(*p)
	}
	all, off := b.String(), 0
	for _, p := range ps {
		l := len(*p)
		*p = all[off : off+l]
		off += l
	}
}

// noteMismatch counts a request whose stamp did not verify at all.
func (d *dialogs) noteMismatch() {
	d.mu.Lock()
	d.mismatched++
	d.mu.Unlock()
}

// stats returns the table's counters.
func (d *dialogs) stats() DialogStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DialogStats{Dialogs: len(d.m), Evicted: d.evicted, Refused: d.refused, Mismatched: d.mismatched}
}

// dropEnded drops the ended dialogs whose time is up, oldest first: they
// are listed by when their BYE passed and all kept as long, so that the
// table holds those of the last CancelTimeout, not of the last sweep's
// interval too (at a few thousand calls a second, the difference was
// tens of thousands of dialogs, and the table full of them).
func (d *dialogs) dropEnded(now time.Time) {
	for e := d.ended.Front(); e != nil; e = d.ended.Front() {
		dl := e.Value.(*dialogState)
		if dl.expires.After(now) {
			return
		}
		d.forget(dl)
	}
}

// sweep drops the expired dialogs, at most once every sweepEvery.
func (d *dialogs) sweep(now time.Time) {
	if now.Sub(d.lastSweep) >= sweepEvery {
		d.sweepAll(now)
	}
}

func (d *dialogs) sweepAll(now time.Time) {
	d.lastSweep = now
	for _, dl := range d.m {
		if !dl.expires.After(now) {
			d.forget(dl)
		}
	}
}

func (d *dialogs) forget(dl *dialogState) {
	if dl.early != nil {
		d.early.Remove(dl.early)
		dl.early = nil
	}
	if dl.ended != nil {
		d.ended.Remove(dl.ended)
		dl.ended = nil
	}
	delete(d.m, dl.key)
}
