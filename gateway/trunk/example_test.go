package trunk_test

import (
	"fmt"
	"net/netip"

	"github.com/switchboard/switchboard/gateway/config"
	"github.com/switchboard/switchboard/gateway/trunk"
)

// The tables of the gateway's routing, built from a configuration file.
func Example() {
	f, err := config.Parse([]byte(`
[[trunk]]
name = "voipco"
host = "sip.voipco.example"
trusted_sources = ["203.0.113.0/24"]
[trunk.did]
"+15551230001" = "alice"

[[route]]
pattern = '9(\d{10})'
strip = 1
prefix = "+1"
trunk = "voipco"
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	plan, _ := trunk.NewDialPlan(f.Routes)
	dids, _ := trunk.NewDIDMap(f.Trunks...)
	sources, _ := trunk.NewTrustedSources(f.Trunks)

	// Outbound: alice dials 9 (555) 987-6543.
	fmt.Println(plan.Match("9 (555) 987-6543"))
	// Inbound: an INVITE from 203.0.113.5 for sip:+1-555-123-0001@gateway.
	fmt.Println(sources.Trusted(netip.MustParseAddr("203.0.113.5")))
	fmt.Println(dids.Lookup("+1-555-123-0001"))
	// Output:
	// voipco +15559876543 true
	// voipco true
	// alice true
}
