package transport_test

import (
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport"
)

// The transaction layer sends through the Layer and receives from it.
var (
	_ transaction.Sender = (*transport.Layer)(nil)
	_ transport.Handler  = transport.HandlerFuncs{Message: (*transaction.Layer)(nil).HandleMessage}
)
