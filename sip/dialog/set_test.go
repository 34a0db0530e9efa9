package dialog

import (
	"sync"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func TestSet(t *testing.T) {
	var s Set
	d, _ := newUASDialog(t, 200)
	if s.Get(d.ID()) != nil || s.Len() != 0 {
		t.Fatal("empty set not empty")
	}
	if !s.Add(d) {
		t.Fatal("Add failed")
	}
	twin, _ := newUASDialog(t, 200) // same ID
	if s.Add(twin) {
		t.Error("Add replaced a dialog with the same ID")
	}
	if s.Get(d.ID()) != d || s.Len() != 1 {
		t.Error("Get after Add")
	}
	if got := s.Match(carolRequest(t, sip.MethodBye, "11")); got != d {
		t.Errorf("Match = %v", got)
	}
	if got := s.Match(parseReq(t, carolInvite)); got != nil {
		t.Errorf("Match of an out-of-dialog request = %v", got)
	}
	if s.Remove(twin) {
		t.Error("Remove removed another dialog with the same ID")
	}
	if !s.Remove(d) || s.Len() != 0 || s.Remove(d) {
		t.Error("Remove")
	}
}

func TestSetConcurrent(t *testing.T) {
	var s Set
	f, err := NewForks(parseReq(t, aliceInvite))
	if err != nil {
		t.Fatal(err)
	}
	var dialogs []*Dialog
	for _, tag := range []string{"c1", "c2", "c3", "c4", "c5", "c6"} {
		r, err := f.ReceiveResponse(bobResponse(t, "180 Ringing", tag, bobPhone))
		if err != nil {
			t.Fatal(err)
		}
		dialogs = append(dialogs, r.Dialog)
	}
	var wg sync.WaitGroup
	for _, d := range dialogs {
		wg.Go(func() {
			s.Add(d)
			if s.Get(d.ID()) != d {
				t.Error("Get after Add")
			}
			_ = s.Len()
			s.Remove(d)
		})
	}
	wg.Wait()
	if s.Len() != 0 {
		t.Errorf("Len %d", s.Len())
	}
}
