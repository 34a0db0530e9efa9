package transaction

// State is the state of a transaction (RFC 3261 §17, RFC 6026).
type State int

// Transaction states.
const (
	// StateCalling: an INVITE client transaction waits for a first
	// response.
	StateCalling State = iota + 1
	// StateTrying: a non-INVITE transaction waits for a first response
	// (client) or for the TU's first response (server).
	StateTrying
	// StateProceeding: a provisional response was received (client) or the
	// final response is awaited from the TU (server; INVITE server
	// transactions start here).
	StateProceeding
	// StateCompleted: a final response (any, for non-INVITE; 300-699, for
	// INVITE) was received or sent; retransmissions are absorbed.
	StateCompleted
	// StateConfirmed: an INVITE server transaction received the ACK of its
	// non-2xx final response.
	StateConfirmed
	// StateAccepted: an INVITE transaction received or sent a 2xx (RFC
	// 6026).
	StateAccepted
	// StateTerminated: the transaction is over.
	StateTerminated
)

var stateNames = [...]string{
	StateCalling:    "Calling",
	StateTrying:     "Trying",
	StateProceeding: "Proceeding",
	StateCompleted:  "Completed",
	StateConfirmed:  "Confirmed",
	StateAccepted:   "Accepted",
	StateTerminated: "Terminated",
}

// String returns the state's name as RFC 3261 writes it.
func (s State) String() string {
	if s > 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "Unknown"
}
