package identity

import (
	"strings"

	"github.com/switchboard/switchboard/sip"
)

// Allow lists the methods the gateway implements, in the Allow header of
// its answers: as a registrar (REGISTER), as a user agent in the calls it
// bridges (INVITE, ACK, CANCEL, BYE, UPDATE, INFO, MESSAGE, OPTIONS; PRACK
// to the reliable provisional responses of callees; REFER, relayed to the
// other party, and the NOTIFYs of its refer subscription, RFC 3515) and
// for OPTIONS pings. A method the gateway answers with 405 or 501 is not
// in it: SUBSCRIBE and PUBLISH are only proxied between users.
const Allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, UPDATE, INFO, MESSAGE, REFER, NOTIFY"

// Accept lists the body types the gateway reads.
const Accept = "application/sdp"

// supported are the option tags the gateway implements (RFC 3261 §19.2):
// path (RFC 3327) and outbound (RFC 5626) as a registrar; in the calls it
// bridges, timer (RFC 4028), replaces (RFC 3891: an INVITE that replaces
// one of its legs reaches the party across that leg, as that party knows
// the dialog) and norefersub (RFC 4488: a REFER with Refer-Sub: false gets
// no NOTIFY). Not 100rel: it sends PRACK to callees but never sends
// reliable provisional responses itself, so a caller's Require: 100rel
// gets 420.
var supported = [...]string{"path", "outbound", "timer", "replaces", "norefersub"}

// Supported returns the Supported header value of the gateway.
func Supported() string { return strings.Join(supported[:], ", ") }

// CallSupported returns the Supported header value of the gateway's
// requests and responses in the calls it bridges: timer when session
// timers are on, 100rel in its INVITEs to callees (it acknowledges their
// reliable provisional responses), replaces and norefersub.
func CallSupported(invite, timers bool) string {
	tags := make([]string, 0, 4)
	if invite {
		tags = append(tags, "100rel")
	}
	if timers {
		tags = append(tags, "timer")
	}
	return strings.Join(append(tags, "replaces", "norefersub"), ", ")
}

// Unsupported returns the option tags of a Require header that the gateway
// does not implement (RFC 3261 §8.2.2.3), for the Unsupported of a 420.
func Unsupported(require []string) []string {
	var out []string
	for _, t := range require {
		known := false
		for _, s := range supported {
			if strings.EqualFold(t, s) {
				known = true
				break
			}
		}
		if !known {
			out = append(out, t)
		}
	}
	return out
}

// IsAllowed reports whether method is in Allow.
func IsAllowed(method string) bool {
	for _, m := range strings.Split(Allow, ", ") {
		if m == method {
			return true
		}
	}
	return false
}

// OptionsResponse returns the gateway's one answer to an OPTIONS addressed
// to it (RFC 3261 §11.2), out of a dialog or within one of its calls: 200
// with Allow, Supported and Accept. The To tag is new when req has none.
func OptionsResponse(req *sip.Request) *sip.Response {
	res := sip.NewResponse(req, 200, "")
	if res.To().Tag() == "" {
		res.SetToTag(sip.NewTag())
	}
	res.Set("Allow", Allow)
	res.Set("Supported", Supported())
	res.Set("Accept", Accept)
	res.Set("Accept-Encoding", "identity")
	res.Set("Accept-Language", "en")
	return res
}

// MethodNotAllowed returns the answer to a request the gateway takes but
// does not implement: 405 with Allow for a method it knows (RFC 3261
// §8.2.1), 501 for one it does not know.
func MethodNotAllowed(req *sip.Request) *sip.Response {
	code := 405
	if !sip.IsKnownMethod(req.Method) {
		code = 501
	}
	res := sip.NewResponse(req, code, "")
	if res.To().Tag() == "" {
		res.SetToTag(sip.NewTag())
	}
	if code == 405 {
		res.Set("Allow", Allow)
	}
	return res
}
