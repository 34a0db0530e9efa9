package location

import (
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/ascii"
	"github.com/switchboard/switchboard/sip"
)

// Binding is one contact of an address of record.
type Binding struct {
	// AOR is the canonical address of record, "sip:user@domain": scheme
	// sip, no port, no parameters, host in lower case.
	AOR string
	// Contact is the Contact as registered, with its header parameters
	// (q, +sip.instance, reg-id, unknown ones) but without expires, which
	// Expires holds.
	Contact sip.Address
	// Expires is when the binding lapses.
	Expires time.Time
	// Q is the q-value in thousandths (0..1000); a contact registered
	// without q gets 1000.
	Q int
	// CallID and CSeq are those of the REGISTER that made or last
	// refreshed the binding (RFC 3261 §10.3 step 7).
	CallID string
	CSeq   uint32
	// Instance is the +sip.instance value without its quotes, e.g.
	// "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>" (RFC 5626 §4.1).
	Instance string
	// RegID is the reg-id of an outbound registration (RFC 5626 §4.2), 0
	// when outbound is not used. Instance and RegID together name a flow.
	RegID int
	// Path holds the Path header values of the registration, top first
	// (RFC 3327): the route back to the user agent.
	Path []string
	// Source is the transport, address and flow the registration came
	// over: where requests go when the Contact cannot be reached directly.
	Source sip.Addr
	// Received is when the binding was made or last refreshed.
	Received time.Time
	// UserAgent is the User-Agent header of the registration.
	UserAgent string
	// Node is the gateway instance the registration came to, which holds
	// its connection, named by its address on the SIP listener the other
	// instances of a cluster reach it at ("sip:10.0.0.2:5060;transport=tcp").
	// A request for a binding that NeedsFlow must go through that
	// instance, which alone can send over Source. Empty when the gateway
	// runs alone.
	Node string
}

// Outbound reports whether the binding was registered with RFC 5626
// outbound: it names a flow by Instance and RegID.
func (b *Binding) Outbound() bool { return b.RegID > 0 && b.Instance != "" }

// Matches reports whether b and o name the same binding, so that storing
// one replaces the other: the same AOR, and the same instance and reg-id
// when o uses outbound (RFC 5626 §6), else equal Contact URIs (RFC 3261
// §10.3 step 7, URI comparison of §19.1.4).
func (b *Binding) Matches(o *Binding) bool {
	if b.AOR != o.AOR {
		return false
	}
	if o.Outbound() {
		return b.RegID == o.RegID && b.Instance == o.Instance
	}
	return b.Contact.URI.Equal(&o.Contact.URI)
}

// NeedsFlow reports whether requests for this binding must go over the flow
// it was registered from (Source) rather than to its Contact: the Contact
// host is a ".invalid" name (RFC 7118 §5, what browsers register), the
// binding uses outbound (RFC 5626 §5.3), or the Contact names a private,
// loopback or link-local address other than the source address — a user
// agent behind NAT that does not know its public address.
func (b *Binding) NeedsFlow() bool {
	host := b.Contact.URI.Host
	if len(host) >= len(".invalid") && ascii.EqualFold(".invalid", host[len(host)-len(".invalid"):]) {
		return true
	}
	if b.Outbound() {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !b.Source.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	return unroutable(ip) && ip != b.Source.AddrPort.Addr().Unmap().WithZone("")
}

// sharedSpace is RFC 6598's carrier-grade NAT space, which netip does not
// count as private but is just as unreachable from outside.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

func unroutable(ip netip.Addr) bool {
	return ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() ||
		ip.IsUnspecified() || sharedSpace.Contains(ip)
}

// own gives b copies of its strings and a Path slice of its own. The
// strings of a parsed message point into the message's buffer, which a
// stored binding must not keep alive: an attacker could pad a REGISTER to
// the size limit and have the whole buffer retained per binding. Strings
// equal to those of old, the binding b replaces (nil: none), are shared
// with it instead, so that a refresh copies next to nothing. It works in
// place: a Binding copied in and out by value made the frames of a
// REGISTER's path kilobytes larger, and its goroutine's stack grow.
func (b *Binding) own(old *Binding) {
	if old == nil {
		old = &noBinding
	}
	b.AOR = reuse(b.AOR, old.AOR)
	ownAddress(&b.Contact, &old.Contact)
	b.CallID = reuse(b.CallID, old.CallID)
	b.Instance = reuse(b.Instance, old.Instance)
	b.UserAgent = reuse(b.UserAgent, old.UserAgent)
	b.Node = reuse(b.Node, old.Node)
	b.Source.Transport = reuse(b.Source.Transport, old.Source.Transport)
	if b.Path != nil {
		p := make([]string, len(b.Path))
		for i, s := range b.Path {
			if i < len(old.Path) {
				p[i] = reuse(s, old.Path[i])
			} else {
				p[i] = strings.Clone(s)
			}
		}
		b.Path = p
	}
}

// noBinding is the binding with nothing to share, for own; never written.
var noBinding Binding

// reuse returns old when it equals s, else a copy of s.
func reuse(s, old string) string {
	if s == old {
		return old
	}
	return strings.Clone(s)
}

func ownAddress(a, old *sip.Address) {
	a.Display = reuse(a.Display, old.Display)
	a.Params = sip.Params(reuse(string(a.Params), string(old.Params)))
	u, o := &a.URI, &old.URI
	u.Scheme = reuse(u.Scheme, o.Scheme)
	u.User = reuse(u.User, o.User)
	u.Password = reuse(u.Password, o.Password)
	u.Host = reuse(u.Host, o.Host)
	u.Params = sip.Params(reuse(string(u.Params), string(o.Params)))
	u.Headers = reuse(u.Headers, o.Headers)
	u.Opaque = reuse(u.Opaque, o.Opaque)
}
