package registrar

import (
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/sip"
)

// DomainIdentity is the identity of a test gateway serving domain, known
// also by aliases, at one UDP endpoint of the domain's name.
func DomainIdentity(domain string, aliases ...string) *identity.Identity {
	id, err := identity.New(identity.Config{
		Domains:   []string{domain},
		Aliases:   aliases,
		Endpoints: []identity.Endpoint{{Transport: sip.UDP, Host: domain, Port: 5060}},
	})
	if err != nil {
		panic(err)
	}
	return id
}

// SetToTag and ContactValue are the registrar's own ways of writing the
// To of a response and a Contact of a 200.
var (
	SetToTag     = setToTag
	ContactValue = contactValue
)
