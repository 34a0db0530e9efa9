package config_test

import (
	"errors"
	"fmt"

	"github.com/switchboard/switchboard/gateway/config"
)

func ExampleLoad() {
	f, err := config.Options{Domain: "example.com"}.Load("example.toml")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range f.Trunks {
		fmt.Println(t.Name, t.Host, t.Transport, t.Register, len(t.DIDs))
	}
	// Output:
	// voipco sip.voipco.example UDP true 2
	// office-pbx pbx.office.example TLS false 1
}

// Every problem is reported at once, with its line.
func ExampleParse_errors() {
	_, err := config.Parse([]byte(`
[[trunk]]
name = "voipco"
hots = "sip.voipco.example"
transport = "sctp"

[[route]]
pattern = '9(\d+)'
trunk = "voipko"
`))
	fmt.Println(errors.Is(err, config.ErrInvalid))
	fmt.Println(err)
	// Output:
	// true
	// invalid config file:
	//   line 2: trunk "voipco" has no host: add host = "sip.provider.example"
	//   line 4, column 1: unknown key "trunk.hots" (did you mean "host"?)
	//   line 5: trunk "voipco": transport "sctp" is not one of udp, tcp, tls
	//   line 9: route #1: trunk "voipko" is not defined in a [[trunk]]
}
