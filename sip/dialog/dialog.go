package dialog

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"github.com/switchboard/switchboard/sip"
)

// State is the state of a dialog (RFC 3261 §12).
type State int

// States. A dialog moves only forwards: Early → Confirmed → Terminated, or
// straight to Confirmed or Terminated.
const (
	// Early: created by a provisional response to an INVITE.
	Early State = iota + 1
	// Confirmed: created or confirmed by a 2xx response.
	Confirmed
	// Terminated: ended by a BYE, a failure response to the creating
	// INVITE, a 481/408 to a request in it, or [Dialog.Terminate].
	Terminated
)

// String returns "early", "confirmed" or "terminated".
func (s State) String() string {
	switch s {
	case Early:
		return "early"
	case Confirmed:
		return "confirmed"
	case Terminated:
		return "terminated"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Dialog is the state of one SIP dialog at one of its ends (RFC 3261 §12.1):
// its ID, the local and remote URIs, the remote target, the route set, the
// sequence numbers and the secure flag.
//
// A Dialog is safe for concurrent use: its changing state is behind an
// internal lock, and ID, IsUAC and Secure never change. It never holds a message it was given; it copies what it needs. The
// messages passed to its methods are read, never changed, but reading a
// header may fill the message's parse cache, so a message must not be used
// by another goroutine during the call.
type Dialog struct {
	id  ID
	uac bool // this side sent the creating request

	// The request that created the dialog, to tell its responses from
	// those of later requests.
	createMethod string
	createSeq    uint32

	secure bool

	mu           sync.Mutex
	state        State
	confirmed    bool // state has been Confirmed; stays true once terminated
	local        sip.Address
	remote       sip.Address
	remoteTarget sip.URI
	routeSet     []sip.Address
	localSeq     uint32
	localSeqSet  bool
	remoteSeq    uint32
	remoteSeqSet bool
	contact      sip.Address
	contactSet   bool
}

// origin is what a UAC dialog takes from the request that creates it. It is
// read from the request once, so that [Forks] can make several dialogs from
// it without touching the request again.
type origin struct {
	method     string
	seq        uint32
	callID     string
	localTag   string
	local      sip.Address
	remote     sip.Address
	requestURI sip.URI
	contact    sip.Address
	contactSet bool
	secure     bool
}

func newOrigin(req *sip.Request) (*origin, error) {
	if !createsDialog(req.Method) {
		return nil, fmt.Errorf("%w: method %s", ErrNoDialog, req.Method)
	}
	from := req.From()
	if from.Tag() == "" {
		return nil, fmt.Errorf("%w: request has no from tag", ErrMalformed)
	}
	if req.To().Tag() != "" {
		return nil, fmt.Errorf("%w: request has a to tag", ErrNoDialog)
	}
	contact, ok, err := contactOf(&req.Headers)
	if err != nil {
		return nil, err
	}
	cseq := req.CSeq()
	return &origin{
		method:     req.Method,
		seq:        cseq.Seq,
		callID:     req.CallID(),
		localTag:   from.Tag(),
		local:      bare(from),
		remote:     bare(req.To()),
		requestURI: req.URI,
		contact:    contact,
		contactSet: ok,
		secure:     req.URI.Scheme == "sips" && sentSecurely(req),
	}, nil
}

// matches checks that res answers the request o was made from.
func (o *origin) matches(res *sip.Response) error {
	cseq := res.CSeq()
	switch {
	case res.CallID() != o.callID:
		return fmt.Errorf("%w: call-id %q", ErrMismatch, res.CallID())
	case res.From().Tag() != o.localTag:
		return fmt.Errorf("%w: from tag %q", ErrMismatch, res.From().Tag())
	case cseq.Seq != o.seq || cseq.Method != o.method:
		return fmt.Errorf("%w: cseq %s", ErrMismatch, cseq)
	}
	return nil
}

// dialog makes the UAC dialog that res creates (RFC 3261 §12.1.2).
func (o *origin) dialog(res *sip.Response) (*Dialog, error) {
	if err := o.matches(res); err != nil {
		return nil, err
	}
	tag := res.To().Tag()
	if !createsWith(o.method, res.StatusCode, tag) {
		return nil, fmt.Errorf("%w: %d response to %s", ErrNoDialog, res.StatusCode, o.method)
	}
	routes, err := reversedRecordRoutes(res)
	if err != nil {
		return nil, err
	}
	target, ok, err := contactOf(&res.Headers)
	if err != nil {
		return nil, err
	}
	d := &Dialog{
		id:           ID{CallID: o.callID, LocalTag: o.localTag, RemoteTag: tag},
		uac:          true,
		createMethod: o.method,
		createSeq:    o.seq,
		secure:       o.secure,
		state:        Early,
		local:        o.local,
		remote:       o.remote,
		remoteTarget: o.requestURI,
		routeSet:     routes,
		localSeq:     o.seq,
		localSeqSet:  true,
		contact:      o.contact,
		contactSet:   o.contactSet,
	}
	if ok {
		d.remoteTarget = target.URI
	}
	if res.IsSuccess() {
		d.state, d.confirmed = Confirmed, true
	}
	return d, nil
}

// NewUAC returns the dialog that res, a response to req, creates at the side
// that sent req (RFC 3261 §12.1.2): an early dialog for a 101-199 response
// with a To tag to an INVITE, a confirmed one for a 2xx response to INVITE,
// SUBSCRIBE or REFER. The route set is the response's Record-Route list in
// reverse order; the remote target is the response's Contact; the local
// Contact (see [Dialog.LocalContact]) is req's.
//
// When the response has no Contact, which RFC 3261 forbids but some
// provisional responses lack, the remote target is req's Request-URI until a
// later response or target refresh supplies one.
//
// req must be the request as sent, with its From tag. When it carries a Via,
// its transport decides the secure flag together with a sips Request-URI;
// without a Via, a sips Request-URI alone sets it, since such a request may
// only be sent over TLS.
//
// For an INVITE that may fork, use [Forks]: it makes one dialog per To tag.
func NewUAC(req *sip.Request, res *sip.Response) (*Dialog, error) {
	o, err := newOrigin(req)
	if err != nil {
		return nil, err
	}
	return o.dialog(res)
}

// NewUAS returns the dialog that res, the response this side sends to req,
// creates at the side that received req (RFC 3261 §12.1.1): early for a
// 101-199 response to an INVITE, confirmed for a 2xx. The route set is req's
// Record-Route list in order; the remote target is req's Contact, which must
// be present; the local tag is res's To tag, which must be set (see
// [sip.Response.SetToTag]); the remote sequence number is req's CSeq and the
// local one is unset. The local Contact is res's, if it has one.
//
// The secure flag is set when req arrived over TLS or WSS (req.Source, or
// its top Via when Source is unset) with a sips Request-URI.
func NewUAS(req *sip.Request, res *sip.Response) (*Dialog, error) {
	if !createsDialog(req.Method) {
		return nil, fmt.Errorf("%w: method %s", ErrNoDialog, req.Method)
	}
	if req.To().Tag() != "" {
		return nil, fmt.Errorf("%w: request has a to tag", ErrNoDialog)
	}
	cseq, rcseq := req.CSeq(), res.CSeq()
	switch {
	case res.CallID() != req.CallID():
		return nil, fmt.Errorf("%w: call-id %q", ErrMismatch, res.CallID())
	case res.From().Tag() != req.From().Tag():
		return nil, fmt.Errorf("%w: from tag %q", ErrMismatch, res.From().Tag())
	case rcseq != cseq:
		return nil, fmt.Errorf("%w: cseq %s", ErrMismatch, rcseq)
	}
	tag := res.To().Tag()
	if tag == "" || !createsWith(req.Method, res.StatusCode, tag) {
		return nil, fmt.Errorf("%w: %d response to %s, to tag %q", ErrNoDialog, res.StatusCode, req.Method, tag)
	}
	routes, err := req.RecordRoutes()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	target, ok, err := contactOf(&req.Headers)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: request has no contact", ErrMalformed)
	}
	contact, contactSet, err := contactOf(&res.Headers)
	if err != nil {
		return nil, err
	}
	d := &Dialog{
		id:           ID{CallID: req.CallID(), LocalTag: tag, RemoteTag: req.From().Tag()},
		createMethod: req.Method,
		createSeq:    cseq.Seq,
		secure:       req.URI.Scheme == "sips" && sentSecurely(req),
		state:        Early,
		local:        bare(req.To()),
		remote:       bare(req.From()),
		remoteTarget: target.URI,
		routeSet:     slices.Clone(routes),
		remoteSeq:    cseq.Seq,
		remoteSeqSet: true,
		contact:      contact,
		contactSet:   contactSet,
	}
	if res.IsSuccess() {
		d.state, d.confirmed = Confirmed, true
	}
	return d, nil
}

// createsDialog reports whether a request with this method can create a
// dialog: INVITE (RFC 3261), SUBSCRIBE (RFC 6665), REFER (RFC 3515).
func createsDialog(method string) bool {
	return method == sip.MethodInvite || method == sip.MethodSubscribe || method == sip.MethodRefer
}

// createsWith reports whether a response with code and To tag creates a
// dialog for a request with method (RFC 3261 §12.1): 2xx always, 101-199
// with a To tag only for INVITE.
func createsWith(method string, code int, tag string) bool {
	switch {
	case code >= 200 && code < 300:
		return true
	case code > 100 && code < 200:
		return method == sip.MethodInvite && tag != ""
	}
	return false
}

// isTargetRefresh reports whether method refreshes the remote target: INVITE
// (RFC 3261 §12.2), UPDATE (RFC 3311), SUBSCRIBE and NOTIFY (RFC 6665). A
// dialog shared by several usages (RFC 5057) has one remote target, so every
// one of them applies to every dialog.
func isTargetRefresh(method string) bool {
	switch method {
	case sip.MethodInvite, sip.MethodUpdate, sip.MethodSubscribe, sip.MethodNotify:
		return true
	}
	return false
}

// bare returns a From or To address without its tag and other header
// parameters: the local or remote URI of the dialog state, with its display
// name.
func bare(a sip.Address) sip.Address {
	return sip.Address{Display: a.Display, URI: a.URI}
}

// withTag returns a with the tag parameter tag, or without parameters when
// tag is empty.
func withTag(a sip.Address, tag string) sip.Address {
	if tag != "" {
		a.Params = sip.Params("").Set("tag", tag)
	}
	return a
}

// contactOf returns the single Contact of a dialog message, ok false when
// there is none. A list, a wildcard or a URI other than sip or sips is an
// error (RFC 3261 §8.1.1.8, §12.1.1).
func contactOf(h *sip.Headers) (c sip.Address, ok bool, err error) {
	list, err := h.Contacts()
	if err != nil {
		return c, false, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch {
	case len(list) == 0:
		return c, false, nil
	case len(list) > 1 || list[0].Wildcard || !list[0].URI.IsSIP():
		return c, false, fmt.Errorf("%w: contact must be exactly one sip or sips uri", ErrMalformed)
	}
	return list[0], true, nil
}

// reversedRecordRoutes returns the route set a UAC takes from a response:
// its Record-Route values in reverse order (RFC 3261 §12.1.2).
func reversedRecordRoutes(res *sip.Response) ([]sip.Address, error) {
	rr, err := res.RecordRoutes()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	routes := slices.Clone(rr)
	slices.Reverse(routes)
	return routes, nil
}

// sentSecurely reports whether req travelled its last hop over TLS or WSS:
// by its Source when the transport set one, by its top Via otherwise, which
// names the transport the request was sent over. A request without either
// (one built here and not yet sent) counts as secure, so that its sips
// Request-URI decides.
func sentSecurely(req *sip.Request) bool {
	if req.Source.IsValid() {
		return req.Source.Secure()
	}
	if len(req.Via()) == 0 {
		return true
	}
	v, _ := req.TopVia()
	switch strings.ToUpper(v.Transport) {
	case sip.TLS, sip.WSS, "TLS-SCTP":
		return true
	}
	return false
}

// initialSeq picks the first local CSeq of a dialog this side did not
// create: random and below 2^31, as RFC 3261 §8.1.1.5 advises.
func initialSeq() uint32 { return 1 + rand.Uint32N(1<<31-1) }

// ID returns the dialog ID. It never changes.
func (d *Dialog) ID() ID { return d.id }

// IsUAC reports whether this side sent the request that created the dialog.
func (d *Dialog) IsUAC() bool { return d.uac }

// Secure reports the secure flag (RFC 3261 §12.1): the creating request had
// a sips Request-URI and was sent over TLS. Requests in a secure dialog must
// be sent over TLS too.
func (d *Dialog) Secure() bool { return d.secure }

// State returns the dialog's state.
func (d *Dialog) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// LocalURI returns the local URI with its display name: the From of the
// creating request at the UAC, its To at the UAS, without tag.
func (d *Dialog) LocalURI() sip.Address {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.local
}

// RemoteURI returns the remote URI with its display name: the To of the
// creating request at the UAC, its From at the UAS, without tag.
func (d *Dialog) RemoteURI() sip.Address {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remote
}

// RemoteTarget returns the remote target, the URI of the peer's latest
// Contact, where requests in the dialog go.
func (d *Dialog) RemoteTarget() sip.URI {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remoteTarget
}

// RouteSet returns a copy of the route set, in the order the Route header of
// a request in the dialog lists it (before strict-routing rewriting).
func (d *Dialog) RouteSet() []sip.Address {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.routeSet)
}

// LocalSeq returns the local sequence number, the CSeq of the latest request
// this side sent in the dialog; ok is false while it is unset (at the UAS
// until its first request).
func (d *Dialog) LocalSeq() (seq uint32, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.localSeq, d.localSeqSet
}

// RemoteSeq returns the remote sequence number, the highest CSeq of the
// requests received in the dialog; ok is false while it is unset (at the UAC
// until the peer sends a request).
func (d *Dialog) RemoteSeq() (seq uint32, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remoteSeq, d.remoteSeqSet
}

// LocalContact returns the Contact this side puts in target refresh
// requests it builds; ok is false when there is none.
func (d *Dialog) LocalContact() (c sip.Address, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.contact, d.contactSet
}

// SetLocalContact sets the Contact this side puts in the target refresh
// requests it builds (INVITE, UPDATE, SUBSCRIBE, NOTIFY). In a secure dialog
// it must be a sips URI (RFC 3261 §8.1.1.8).
func (d *Dialog) SetLocalContact(c sip.Address) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.contact, d.contactSet = c, true
}

// Terminate ends the dialog: on a transaction timeout of a request in it
// (RFC 3261 §12.2.1.2 treats it as a 408; not for NOTIFY, SUBSCRIBE or
// REFER in a dialog an INVITE created, whose timeout ends only their
// subscription, RFC 5057 §5), when the INVITE transaction of an early
// dialog ends without a 2xx, or whenever the caller drops it.
func (d *Dialog) Terminate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state = Terminated
}

// String describes the dialog for logs.
func (d *Dialog) String() string {
	return d.id.String() + " " + d.State().String()
}
