package location

import (
	"encoding/json"
	"fmt"
	"time"
)

// Change is what one Contact of a REGISTER asks of its AOR's bindings.
type Change struct {
	// Binding is the binding to store. For a removal only what Matches
	// reads counts: its Contact URI, Instance and RegID.
	Binding Binding
	// Remove removes the binding that Binding matches instead (a Contact
	// with an expiry of 0).
	Remove bool
}

// Update is what one REGISTER asks of the bindings of one address of
// record (RFC 3261 §10.3 steps 6 to 8). Store.Update applies it whole or
// not at all, as §10.3 step 8 wants: "committed if and only if all
// binding updates and additions succeed".
type Update struct {
	// AOR is the address of record; every Change's binding must have it.
	AOR string
	// Changes are the Contacts of the REGISTER: removals first, then the
	// bindings to store, each replacing the binding it matches.
	Changes []Change
	// RemoveAll, with no Changes, removes every binding of AOR
	// ("Contact: *" with "Expires: 0").
	RemoveAll bool
	// CallID and CSeq are those of the REGISTER. A binding made under
	// the same Call-ID may only be changed by a higher CSeq (§10.3 step
	// 7); otherwise Update fails with ErrOutOfOrder. An empty CallID
	// skips that check.
	CallID string
	CSeq   uint32
}

// Validate reports what makes u unusable at now, wrapping
// ErrInvalidBinding, or nil: an AOR missing, a binding of another AOR, a
// binding to store without a Contact URI or already expired. Stores call
// it before they change anything.
func (u *Update) Validate(now time.Time) error {
	if u.AOR == "" {
		return fmt.Errorf("%w: no AOR", ErrInvalidBinding)
	}
	for i := range u.Changes {
		b := &u.Changes[i].Binding
		switch {
		case b.AOR != u.AOR:
			return fmt.Errorf("%w: binding of %q in an update of %q", ErrInvalidBinding, b.AOR, u.AOR)
		case u.Changes[i].Remove:
		case b.Contact.Wildcard || b.Contact.URI.Scheme == "":
			return fmt.Errorf("%w: no contact URI", ErrInvalidBinding)
		case !b.Expires.After(now):
			return fmt.Errorf("%w: already expired", ErrInvalidBinding)
		}
	}
	return nil
}

// outOfOrder reports whether u would change a binding of cur made under
// its Call-ID with a CSeq not lower than its own.
func (u *Update) outOfOrder(cur []Binding) bool {
	if u.CallID == "" {
		return false
	}
	for i := range cur {
		c := &cur[i]
		if c.CallID != u.CallID || u.CSeq > c.CSeq {
			continue
		}
		if u.RemoveAll {
			return true
		}
		for j := range u.Changes {
			if c.Matches(&u.Changes[j].Binding) {
				return true
			}
		}
	}
	return false
}

// apply returns the bindings of u.AOR after u, from the stored list old
// (sorted; expired bindings are dropped): removals first, then each
// binding to store in place of those it matches, or added. It fails
// with ErrOutOfOrder, or ErrTooManyBindings when the update adds bindings
// and leaves more than max. The bindings stored own their strings (see own).
func (u *Update) apply(old []Binding, now time.Time, max int) ([]Binding, error) {
	cur := make([]Binding, 0, len(old)+len(u.Changes))
	for i := range old {
		if old[i].Expires.After(now) {
			cur = append(cur, old[i])
		}
	}
	if u.outOfOrder(cur) {
		return nil, fmt.Errorf("%w: %s Call-ID %s CSeq %d", ErrOutOfOrder, u.AOR, u.CallID, u.CSeq)
	}
	if u.RemoveAll {
		return nil, nil
	}
	before := len(cur)
	for j := range u.Changes {
		ch := &u.Changes[j]
		if !ch.Remove {
			continue
		}
		keep := cur[:0]
		for i := range cur {
			if !cur[i].Matches(&ch.Binding) {
				keep = append(keep, cur[i])
			}
		}
		cur = keep
	}
	for j := range u.Changes {
		ch := &u.Changes[j]
		if ch.Remove {
			continue
		}
		// Every binding it matches goes (a plain Contact can match the
		// URI of two outbound flows), and it takes the last place among
		// its equals, as Put does.
		// repl is declared out of the loops: the address of a variable
		// of the inner loop would move it to the heap, one allocation
		// of a Binding per refresh.
		var replaced *Binding
		var repl Binding
		keep := cur[:0]
		for i := range cur {
			if cur[i].Matches(&ch.Binding) {
				if replaced == nil {
					repl = cur[i]
					replaced = &repl
				}
				continue
			}
			keep = append(keep, cur[i])
		}
		cur = append(keep, ch.Binding)
		cur[len(cur)-1].own(replaced)
	}
	if len(cur) > max && len(cur) > before {
		return nil, fmt.Errorf("%w: %s would have %d", ErrTooManyBindings, u.AOR, len(cur))
	}
	sortBindings(cur)
	return cur, nil
}

// MarshalBinding encodes b in the form the embedded store keeps on disk
// (JSON, the Contact in its wire form), for a store that keeps bindings
// elsewhere.
func MarshalBinding(b *Binding) ([]byte, error) {
	r := newRecord(b)
	return json.Marshal(&r)
}

// UnmarshalBinding decodes what MarshalBinding encoded. The binding's
// strings are its own.
func UnmarshalBinding(data []byte) (Binding, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return Binding{}, fmt.Errorf("decode binding: %w", err)
	}
	return r.binding()
}
