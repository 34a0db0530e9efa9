package redisstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/sip"
)

// entry is a binding as the script sees it: the binding itself, encoded
// by location.MarshalBinding and opaque to the script (B), and the few
// fields the script decides on.
type entry struct {
	B  string `json:"b"`
	X  int64  `json:"x"`  // expires, Unix ms
	RV int64  `json:"rv"` // received, Unix ms
	CI string `json:"ci"` // Call-ID
	CS uint32 `json:"cs"` // CSeq
	I  string `json:"i"`  // +sip.instance
	RG int    `json:"rg"` // reg-id
	U  uriKey `json:"u"`  // the Contact URI, for comparing
	N  string `json:"n"`  // node
	S  string `json:"s"`  // source, for DeleteFlow
	F  bool   `json:"f"`  // NeedsFlow
}

// uriKey is a SIP URI in the form the script compares (see change): B
// holds everything compared exactly, P the parameters by decoded,
// lower-case name, with decoded, lower-case values.
type uriKey struct {
	B string            `json:"b"`
	P map[string]string `json:"p"`
}

func newEntry(b *location.Binding) (entry, error) {
	data, err := location.MarshalBinding(b)
	if err != nil {
		return entry{}, err
	}
	return entry{
		B:  string(data),
		X:  b.Expires.UnixMilli(),
		RV: b.Received.UnixMilli(),
		CI: b.CallID,
		CS: b.CSeq,
		I:  b.Instance,
		RG: b.RegID,
		U:  keyOf(&b.Contact.URI),
		N:  b.Node,
		S:  sourceKey(b.Source),
		F:  b.NeedsFlow(),
	}, nil
}

// sourceKey names a flow in the script: transport, address and flow id.
func sourceKey(a sip.Addr) string {
	return a.Transport + " " + a.AddrPort.String() + " " + strconv.FormatUint(a.Flow, 10)
}

// keyOf returns the comparison form of u: two URIs are equal by sip.URI.Equal
// when the script's sameURI holds for their keys. Scheme, user, password
// and port compare exactly, the host without case, the headers as a set;
// each length-prefixed, since a decoded user may hold any octet.
func keyOf(u *sip.URI) uriKey {
	var b strings.Builder
	part := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	part(u.Scheme)
	part(u.User)
	part(u.Password)
	part(strings.ToLower(u.Host))
	part(strconv.Itoa(u.Port))
	if u.Headers != "" {
		hs := strings.Split(u.Headers, "&")
		for i, h := range hs {
			n, v, _ := strings.Cut(h, "=")
			hs[i] = strings.ToLower(unescape(n)) + "=" + unescape(v)
		}
		slices.Sort(hs)
		for _, h := range hs {
			part(h)
		}
	}
	k := uriKey{B: b.String(), P: make(map[string]string)}
	u.Params.Range(func(name, value string) bool {
		name = strings.ToLower(unescape(name))
		if _, dup := k.P[name]; !dup { // the first one counts, as for Get
			k.P[name] = strings.ToLower(unescape(value))
		}
		return true
	})
	return k
}

// unescape decodes the %HH escapes of s; anything else stays as it is.
func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, fromHex(s[i+1])<<4|fromHex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func fromHex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// decodeEntries decodes a key's value: the bindings it holds.
func decodeEntries(raw string) ([]location.Binding, error) {
	var es []struct {
		B string `json:"b"`
	}
	if err := json.Unmarshal([]byte(raw), &es); err != nil {
		return nil, fmt.Errorf("decode bindings: %w", err)
	}
	out := make([]location.Binding, 0, len(es))
	for _, e := range es {
		b, err := location.UnmarshalBinding([]byte(e.B))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
