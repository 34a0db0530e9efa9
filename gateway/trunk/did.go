package trunk

import (
	"fmt"
)

// DIDMap maps the inbound numbers (DIDs) of trunks to local users. It is
// immutable and safe for concurrent use.
type DIDMap struct {
	users map[string]string // by NormalizeNumber
}

// NewDIDMap builds the map of the DIDs of trunks: pass the trunk a call
// came in on for a per-trunk map, or every trunk for one map. A number
// given twice must map to the same user.
func NewDIDMap(trunks ...Trunk) (*DIDMap, error) {
	m := &DIDMap{users: make(map[string]string)}
	for _, t := range trunks {
		for _, d := range t.DIDs {
			n, ok := NormalizeNumber(d.Number)
			if !ok {
				return nil, fmt.Errorf("trunk %q: DID %q is not a phone number", t.Name, d.Number)
			}
			if prev, dup := m.users[n]; dup && prev != d.User {
				return nil, fmt.Errorf("trunk %q: DID %q maps to both %q and %q", t.Name, d.Number, prev, d.User)
			}
			m.users[n] = d.User
		}
	}
	return m, nil
}

// Lookup returns the local user that number rings. number may be written
// as the gateway finds it in the Request-URI or the To of an inbound
// INVITE: "+15551230001", "15551230001", "+1-555-123-0001", or with user
// parameters ("+15551230001;npdi"). Numbers compare by their digits, as
// NormalizeNumber gives them: "+1555..." and "1555..." are the
// same number, "5551230001" is another.
func (m *DIDMap) Lookup(number string) (user string, ok bool) {
	n, valid := NormalizeNumber(number)
	if !valid {
		return "", false
	}
	user, ok = m.users[n]
	return user, ok
}

// Len returns the number of DIDs.
func (m *DIDMap) Len() int { return len(m.users) }
