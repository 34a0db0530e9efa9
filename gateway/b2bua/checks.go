package b2bua

import (
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

// checkInvite makes the checks of a UAS (RFC 3261 §8.2) on the caller's
// INVITE and returns the response that refuses it, or nil:
//
//   - 420 with Unsupported for an option tag in Require that the gateway
//     does not implement as a UAS (it implements "timer"; reliable
//     provisional responses, "100rel", only as a UAC);
//   - 415 with Accept for a body other than SDP (RFC 4475 invut), or with
//     Accept-Encoding for an encoded one;
//   - 406 when Accept rules out SDP (RFC 4475 sdp01);
//   - 400 without exactly one sip or sips Contact;
//   - 422 with Min-SE for a session interval below Options.MinSE (RFC
//     4028 §8.1).
func (b *B2BUA) checkInvite(req *sip.Request) *sip.Response {
	refuse := func(code int, reason string, hdrs ...string) *sip.Response {
		res := sip.NewResponse(req, code, reason)
		res.SetToTag(sip.NewTag())
		for i := 0; i+1 < len(hdrs); i += 2 {
			res.Add(hdrs[i], hdrs[i+1])
		}
		return res
	}
	var unsupported []string
	for _, t := range req.Tokens("Require") {
		switch {
		case strings.EqualFold(t, timerTag) && b.opts.SessionExpires >= 0:
		case strings.EqualFold(t, replacesTag) && req.Has("Replaces"):
			// Passed on to the callee, which holds the dialog.
		default:
			unsupported = append(unsupported, t)
		}
	}
	if len(unsupported) > 0 {
		return refuse(420, "", "Unsupported", strings.Join(unsupported, ", "))
	}
	if len(req.Body) > 0 {
		if mediaType(req.ContentType()) != contentSDP {
			return refuse(415, "", "Accept", contentSDP)
		}
		if enc := req.Get("Content-Encoding"); enc != "" && !strings.EqualFold(strings.TrimSpace(enc), "identity") {
			return refuse(415, "", "Accept-Encoding", "identity")
		}
	}
	if req.Has("Accept") && !acceptsSDP(req.Tokens("Accept")) {
		return refuse(406, "", "Accept", contentSDP, "Warning", "399 - "+quoteWarning("only application/sdp bodies"))
	}
	contacts, err := req.Contacts()
	if err != nil || len(contacts) != 1 || contacts[0].Wildcard || !contacts[0].URI.IsSIP() {
		return refuse(400, "Bad Request (Contact must be one sip or sips URI)")
	}
	if b.opts.SessionExpires > 0 {
		se, _, ok, err := req.SessionExpires()
		if err != nil {
			return refuse(400, "Bad Request (malformed Session-Expires)")
		}
		if ok && time.Duration(se)*time.Second < b.opts.MinSE {
			return refuse(422, "", "Min-SE", seconds(b.opts.MinSE))
		}
	}
	return nil
}

// mediaType returns the type/subtype of a Content-Type or Accept value in
// lower case, without parameters.
func mediaType(v string) string {
	t, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// acceptsSDP reports whether an Accept list admits application/sdp.
func acceptsSDP(list []string) bool {
	for _, v := range list {
		switch mediaType(v) {
		case contentSDP, "application/*", "*/*":
			return true
		}
	}
	return false
}

// parseDTMF reads a SIP INFO DTMF body: application/dtmf-relay
// ("Signal=5\r\nDuration=160", duration in ms) or application/dtmf (the
// digit alone). Signals 10 and 11, which some send for * and #, are
// mapped.
func parseDTMF(req *sip.Request) (digit rune, dur time.Duration, ok bool) {
	body := strings.TrimSpace(string(req.Body))
	switch mediaType(req.ContentType()) {
	case "application/dtmf":
		if body == "" {
			return 0, 0, false
		}
		if n, err := strconv.Atoi(body); err == nil {
			return signal(n)
		}
		return dtmfDigit(body)
	case "application/dtmf-relay":
	default:
		return 0, 0, false
	}
	for line := range strings.SplitSeq(body, "\n") {
		name, value, found := strings.Cut(line, "=")
		if !found {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "signal":
			if n, err := strconv.Atoi(value); err == nil {
				digit, _, ok = signal(n)
			} else {
				digit, _, ok = dtmfDigit(value)
			}
		case "duration":
			if ms, err := strconv.Atoi(value); err == nil && ms > 0 && ms < 60000 {
				dur = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if !ok {
		return 0, 0, false
	}
	return digit, dur, true
}

func signal(n int) (rune, time.Duration, bool) {
	switch {
	case n >= 0 && n <= 9:
		return rune('0' + n), 0, true
	case n == 10:
		return '*', 0, true
	case n == 11:
		return '#', 0, true
	case n >= 12 && n <= 15:
		return rune('A' + n - 12), 0, true
	}
	return 0, 0, false
}

func dtmfDigit(s string) (rune, time.Duration, bool) {
	if len(s) != 1 {
		return 0, 0, false
	}
	c := rune(s[0])
	switch {
	case c >= '0' && c <= '9', c == '*', c == '#':
		return c, 0, true
	case c >= 'A' && c <= 'D':
		return c, 0, true
	case c >= 'a' && c <= 'd':
		return c - 'a' + 'A', 0, true
	}
	return 0, 0, false
}

// prack acknowledges a reliable provisional response of the callee (RFC
// 3262 §4) in its early dialog d. It reports false for a retransmission,
// which is neither acknowledged again nor relayed.
func (c *call) prack(d *dialog.Dialog, res *sip.Response) bool {
	if !res.HasToken("Require", reliableTag) {
		return true
	}
	rseq, ok, err := res.RSeq()
	if !ok || err != nil {
		return true
	}
	id := d.ID()
	c.mu.Lock()
	last, seen := c.pracked[id]
	if seen && rseq <= last {
		c.mu.Unlock()
		return false
	}
	c.pracked[id] = rseq
	c.mu.Unlock()
	rack := strconv.FormatUint(uint64(rseq), 10) + " " + res.CSeq().String()
	_, _, err = c.callee.start(c.ctx, d, sip.MethodPrack, func(req *sip.Request) error {
		req.Add("RAck", rack)
		return nil
	})
	if err != nil {
		c.log.Info("prack", "err", err)
	}
	return true
}
