package location_test

import (
	"testing"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/location/locationtest"
)

// TestContract runs the Store contract on Memory, with and without a data
// directory.
func TestContract(t *testing.T) {
	for name, dir := range map[string]bool{"memory": false, "journal": true} {
		t.Run(name, func(t *testing.T) {
			locationtest.Run(t, func(t *testing.T, c *clock.Fake, max int) (location.Store, string) {
				opts := location.Options{Clock: c, MaxBindingsPerAOR: max}
				if dir {
					opts.Dir = t.TempDir()
				}
				m, err := location.Open(opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { m.Close() })
				return m, ""
			})
		})
	}
}
