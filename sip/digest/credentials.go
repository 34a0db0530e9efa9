package digest

import "strings"

// Credentials are Digest credentials, the value of an Authorization or
// Proxy-Authorization header field (RFC 7616 §3.4).
type Credentials struct {
	// Username is the user name, or its hash when UserHash is set.
	Username string
	// Realm and Nonce are copied from the challenge answered.
	Realm string
	Nonce string
	// URI is the digest-uri: in SIP, the Request-URI of the request.
	URI string
	// Response is the request-digest, lowercase hex.
	Response string
	// Algorithm is copied from the challenge; "" means MD5.
	Algorithm string
	// CNonce is the client's nonce, present with a qop.
	CNonce string
	// Opaque is copied from the challenge.
	Opaque string
	// QOP is the chosen qop ("auth"), or "" for RFC 2069 style.
	QOP string
	// NC is the nonce count, 8 hex digits.
	NC string
	// UserHash reports that Username is H(username ":" realm).
	UserHash bool
}

var credentialParams = []string{"username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "opaque", "qop", "nc", "userhash"}

// ParseCredentials parses an Authorization or Proxy-Authorization header
// value. The scheme and parameter names are case-insensitive and unknown
// parameters (including username*) are ignored. A missing username, realm,
// nonce, uri or response is an [ErrMalformed] error naming it. A header of
// another scheme yields [ErrUnsupportedScheme]. Parsing does not check the
// values: [Server.Verify] does.
func ParseCredentials(headerValue string) (Credentials, error) {
	var c Credentials
	var seen paramSet
	err := parseAuth(headerValue, func(name, value string) error {
		i := lookupParam(credentialParams, name)
		if i < 0 {
			return nil
		}
		if err := seen.add(uint(i), name); err != nil {
			return err
		}
		switch i {
		case 0:
			c.Username = value
		case 1:
			c.Realm = value
		case 2:
			c.Nonce = value
		case 3:
			c.URI = value
		case 4:
			c.Response = value
		case 5:
			c.Algorithm = value
		case 6:
			c.CNonce = value
		case 7:
			c.Opaque = value
		case 8:
			c.QOP = value
		case 9:
			c.NC = value
		case 10:
			c.UserHash = strings.EqualFold(value, "true")
		}
		return nil
	})
	if err != nil {
		return Credentials{}, err
	}
	for i := range uint(5) {
		if !seen.has(i) {
			return Credentials{}, malformed("missing %s", credentialParams[i])
		}
	}
	return c, nil
}

// String formats the credentials as a header value, quoting the parameters
// RFC 7616 §3.4 quotes and leaving algorithm, qop, nc and userhash bare.
// The five required parameters are always written; other empty fields are
// omitted.
func (c Credentials) String() string {
	var w writer
	w.start()
	w.quoted("username", c.Username)
	w.quoted("realm", c.Realm)
	w.quoted("nonce", c.Nonce)
	w.quoted("uri", c.URI)
	w.quoted("response", c.Response)
	if c.Algorithm != "" {
		w.bare("algorithm", c.Algorithm)
	}
	if c.CNonce != "" {
		w.quoted("cnonce", c.CNonce)
	}
	if c.Opaque != "" {
		w.quoted("opaque", c.Opaque)
	}
	if c.QOP != "" {
		w.bare("qop", c.QOP)
	}
	if c.NC != "" {
		w.bare("nc", c.NC)
	}
	if c.UserHash {
		w.bare("userhash", "true")
	}
	return w.String()
}
