package sip

import "strings"

// headerID numbers the headers this stack knows, so that lookups after
// parsing compare small integers instead of folding case.
type headerID uint8

const (
	hOther headerID = iota
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hMaxForwards
	hContentLength
	hContact
	hRoute
	hRecordRoute
	hPath
	hContentType
	hContentEncoding
	hExpires
	hMinExpires
	hRequire
	hSupported
	hUnsupported
	hProxyRequire
	hAllow
	hAccept
	hWWWAuthenticate
	hProxyAuthenticate
	hAuthorization
	hProxyAuthorization
	hRSeq
	hRAck
	hEvent
	hSubscriptionState
	hReferTo
	hReferredBy
	hReplaces
	hSessionExpires
	hMinSE
	hSubject
	hAllowEvents
	hUserAgent
	hServer
	hDate
	hTimestamp
	hReason
	hRetryAfter
	hWarning
	hFlowTimer
	hServiceRoute
	hAcceptContact
	hRejectContact
	hRequestDisposition
	hIdentity
	hIdentityInfo
	hContentDisposition
	hAcceptEncoding
	hAcceptLanguage
	hContentLanguage
	hPriority
	hOrganization
	hCallInfo
	hAlertInfo
	hErrorInfo
	hInReplyTo
	hReplyTo
	hMIMEVersion
	hCount
)

// headerNames holds the canonical spelling of each known header.
var headerNames = [hCount]string{
	hVia: "Via", hFrom: "From", hTo: "To", hCallID: "Call-ID", hCSeq: "CSeq",
	hMaxForwards: "Max-Forwards", hContentLength: "Content-Length",
	hContact: "Contact", hRoute: "Route", hRecordRoute: "Record-Route",
	hPath: "Path", hContentType: "Content-Type",
	hContentEncoding: "Content-Encoding", hExpires: "Expires",
	hMinExpires: "Min-Expires", hRequire: "Require", hSupported: "Supported",
	hUnsupported: "Unsupported", hProxyRequire: "Proxy-Require",
	hAllow: "Allow", hAccept: "Accept", hWWWAuthenticate: "WWW-Authenticate",
	hProxyAuthenticate: "Proxy-Authenticate", hAuthorization: "Authorization",
	hProxyAuthorization: "Proxy-Authorization", hRSeq: "RSeq", hRAck: "RAck",
	hEvent: "Event", hSubscriptionState: "Subscription-State",
	hReferTo: "Refer-To", hReferredBy: "Referred-By", hReplaces: "Replaces",
	hSessionExpires: "Session-Expires", hMinSE: "Min-SE", hSubject: "Subject",
	hAllowEvents: "Allow-Events", hUserAgent: "User-Agent", hServer: "Server",
	hDate: "Date", hTimestamp: "Timestamp", hReason: "Reason",
	hRetryAfter: "Retry-After", hWarning: "Warning", hFlowTimer: "Flow-Timer",
	hServiceRoute: "Service-Route", hAcceptContact: "Accept-Contact",
	hRejectContact: "Reject-Contact", hRequestDisposition: "Request-Disposition",
	hIdentity: "Identity", hIdentityInfo: "Identity-Info",
	hContentDisposition: "Content-Disposition", hAcceptEncoding: "Accept-Encoding",
	hAcceptLanguage: "Accept-Language", hContentLanguage: "Content-Language",
	hPriority: "Priority", hOrganization: "Organization", hCallInfo: "Call-Info",
	hAlertInfo: "Alert-Info", hErrorInfo: "Error-Info", hInReplyTo: "In-Reply-To",
	hReplyTo: "Reply-To", hMIMEVersion: "MIME-Version",
}

// compactForms maps the one-letter forms of RFC 3261 §7.3.3 and its
// extensions (lower case) to headers.
var compactForms = func() (t [26]headerID) {
	for c, id := range map[byte]headerID{
		'a': hAcceptContact, 'b': hReferredBy, 'c': hContentType,
		'd': hRequestDisposition, 'e': hContentEncoding, 'f': hFrom,
		'i': hCallID, 'j': hRejectContact, 'k': hSupported,
		'l': hContentLength, 'm': hContact, 'n': hIdentityInfo, 'o': hEvent,
		'r': hReferTo, 's': hSubject, 't': hTo, 'u': hAllowEvents, 'v': hVia,
		'x': hSessionExpires, 'y': hIdentity,
	} {
		t[c-'a'] = id
	}
	return t
}()

// nameTable finds a known name from its length and two of its letters:
// nameHash gives every name of headerNames its own slot, so a lookup is one
// table load and one comparison instead of a scan over candidates.
var nameTable = func() (t [256]headerID) {
	for id := hVia; id < hCount; id++ {
		k := nameHash(headerNames[id])
		if t[k] != hOther {
			panic("sip: header names " + headerNames[t[k]] + " and " + headerNames[id] + " share a slot of nameTable")
		}
		t[k] = id
	}
	return t
}()

// nameHash mixes the length, the first and the middle letter of a name
// (case folded): different for every name in headerNames, which init checks.
// name must not be empty.
func nameHash(name string) uint8 {
	n := len(name)
	return uint8(2*uint(name[0]|0x20) + 19*uint(name[n/2]|0x20) + 34*uint(n))
}

func lookupHeader(name string) headerID {
	// Most senders write the canonical spelling: one table load and one
	// comparison find it (index has this part written out).
	if len(name) > 1 {
		if id := nameTable[nameHash(name)]; headerNames[id] == name {
			return id
		}
	}
	return lookupHeaderFold(name)
}

// lookupHeaderFold is lookupHeader for compact forms and names not in
// their canonical case.
func lookupHeaderFold(name string) headerID {
	if len(name) == 1 {
		c := name[0] | 0x20
		if c >= 'a' && c <= 'z' {
			return compactForms[c-'a']
		}
		return hOther
	}
	if name == "" {
		return hOther
	}
	id := nameTable[nameHash(name)]
	// The lengths must match, as strings.EqualFold folds some non-ASCII
	// letters to ASCII ones ("\u212a" to "k").
	canon := headerNames[id]
	if len(name) != len(canon) || !strings.EqualFold(name, canon) {
		return hOther
	}
	return id
}

// CanonicalHeaderName returns the canonical spelling of a known header name
// or compact form ("v" and "VIA" give "Via"), and name itself otherwise.
func CanonicalHeaderName(name string) string {
	if id := lookupHeader(name); id != hOther {
		return headerNames[id]
	}
	return name
}

// HeaderField is one header line.
type HeaderField struct {
	// Name is the name as written, possibly a compact form.
	Name string
	// Value is the value with line folding undone and surrounding LWS
	// trimmed.
	Value string
	id    headerID
	// raw, when not 0, numbers (from 1) the entry of the owner's raws that
	// holds the whole line as received (without its CRLF), written back
	// unchanged so that a forwarded header keeps its exact bytes. A line
	// that reads exactly Name + ": " + Value needs none: the field writes
	// it back byte for byte, and stays small.
	raw uint32
}

func (f *HeaderField) is(id headerID, name string) bool {
	if id != hOther {
		return f.id == id
	}
	return f.id == hOther && strings.EqualFold(f.Name, name)
}

func (f *HeaderField) appendTo(b []byte, raws []string) []byte {
	if f.raw != 0 {
		return append(b, raws[f.raw-1]...)
	}
	b = append(b, f.Name...)
	b = append(b, ": "...)
	return append(b, f.Value...)
}
