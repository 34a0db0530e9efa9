package redistest

import (
	"context"
	"testing"
)

// TestRestartEmpties: a server answers, keeps nothing across a restart,
// and answers again on the same address.
func TestRestartEmpties(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if s.Running() {
		t.Fatal("running after Kill")
	}
	if err := c.Get(ctx, "k").Err(); err == nil {
		t.Fatal("a killed server answered")
	}
	s.Restart()
	if err := c.Get(ctx, "k").Err(); err == nil || err.Error() != "redis: nil" {
		t.Fatalf("after a restart: %v, want redis: nil (empty)", err)
	}
}
