package proxy

import "errors"

// Errors that callers branch on with errors.Is.
var (
	// ErrInvalidOptions means New was given Options it cannot work with:
	// no Transactions, no Sender or no Endpoints.
	ErrInvalidOptions = errors.New("proxy: invalid options")
	// ErrUnresolvable means a Resolver found no address for a URI. The
	// default resolver returns it for every host name.
	ErrUnresolvable = errors.New("proxy: cannot resolve uri")
)
