package dialog

import (
	"sync"

	"github.com/switchboard/switchboard/sip"
)

// Set is a table of dialogs keyed by [ID], where the code that receives
// requests finds the dialog they belong to. The zero value is an empty set;
// a Set is safe for concurrent use. It does not drop terminated dialogs by
// itself: remove them when done.
type Set struct {
	mu sync.RWMutex
	m  map[ID]*Dialog
}

// Add adds d under its ID and reports whether it did; it does not replace a
// dialog already there with the same ID.
func (s *Set) Add(d *Dialog) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[d.id]; ok {
		return false
	}
	if s.m == nil {
		s.m = make(map[ID]*Dialog)
	}
	s.m[d.id] = d
	return true
}

// Get returns the dialog with ID id, or nil.
func (s *Set) Get(id ID) *Dialog {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[id]
}

// Match returns the dialog a received request belongs to
// (IDFromRequest(req, true)), or nil: an out-of-dialog request, or one for
// an unknown dialog (481 when it has a To tag, RFC 3261 §12.2.2).
func (s *Set) Match(req *sip.Request) *Dialog {
	return s.Get(IDFromRequest(req, true))
}

// Remove removes d and reports whether it was there. Another dialog with the
// same ID is left in place.
func (s *Set) Remove(d *Dialog) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[d.id] != d {
		return false
	}
	delete(s.m, d.id)
	return true
}

// Len returns the number of dialogs in the set.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}
