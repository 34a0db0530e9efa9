package dialog

import "github.com/switchboard/switchboard/sip"

// ID identifies a dialog at one of its ends (RFC 3261 §12): the Call-ID, the
// tag this side put in the dialog, and the tag the peer put in it. The two
// ends of one dialog have mirror-image IDs. Every part compares
// case-sensitively, as an opaque string, so ID is usable as a map key.
//
// RemoteTag is empty for a dialog with a peer that sent no tag (RFC 2543
// compatibility, RFC 3261 §12.1.2 and §12.2.2).
type ID struct {
	CallID, LocalTag, RemoteTag string
}

// String returns "call-id;local=tag;remote=tag", for logs.
func (id ID) String() string {
	return id.CallID + ";local=" + id.LocalTag + ";remote=" + id.RemoteTag
}

// IDFromRequest returns the ID of the dialog req belongs to, as seen by the
// side that received it when uas is true (local tag = To tag, remote tag =
// From tag), or by the side that sent it otherwise (local tag = From tag,
// remote tag = To tag). A dialog-creating request has no To tag, so its ID
// has an empty tag on that side.
func IDFromRequest(req *sip.Request, uas bool) ID {
	from, to := req.From().Tag(), req.To().Tag()
	if uas {
		return ID{CallID: req.CallID(), LocalTag: to, RemoteTag: from}
	}
	return ID{CallID: req.CallID(), LocalTag: from, RemoteTag: to}
}

// IDFromResponse returns the ID of the dialog res belongs to, as seen by the
// side that received it, the UAC, when uac is true (local tag = From tag,
// remote tag = To tag), or by the side that sent it otherwise.
func IDFromResponse(res *sip.Response, uac bool) ID {
	from, to := res.From().Tag(), res.To().Tag()
	if uac {
		return ID{CallID: res.CallID(), LocalTag: from, RemoteTag: to}
	}
	return ID{CallID: res.CallID(), LocalTag: to, RemoteTag: from}
}
