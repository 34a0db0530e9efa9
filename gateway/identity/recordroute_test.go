package identity

import (
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// RecordRoute writes the same values as before it was written on the
// stack (IPv6 hosts bracketed, no port when none, transport in lower case
// but for UDP, params in pieces) and allocates only the string it returns:
// the proxy writes two per call.
func TestRecordRouteForms(t *testing.T) {
	id, err := New(Config{Domains: []string{"example.com"}, Endpoints: []Endpoint{
		{Transport: sip.UDP, Host: "2001:db8::10", Port: 5060},
		{Transport: sip.TCP, Host: "gw.example.com"},
		{Transport: sip.WSS, Host: "192.0.2.10", Port: 8443},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		transport, user string
		params          []string
		want            string
	}{
		{sip.UDP, "", nil, "<sip:[2001:db8::10]:5060;lr>"},
		{"udp", "tok", []string{";sbdlg=", "r123"}, "<sip:tok@[2001:db8::10]:5060;lr;sbdlg=r123>"},
		{sip.TCP, "", []string{";x=1"}, "<sip:gw.example.com;transport=tcp;lr;x=1>"},
		{sip.WSS, "tok", []string{";a=", "b", ";c"}, "<sip:tok@192.0.2.10:8443;transport=wss;lr;a=b;c>"},
	} {
		if got := id.RecordRoute(tt.transport, tt.user, tt.params...); got != tt.want {
			t.Errorf("RecordRoute(%s, %q, %q) = %s, want %s", tt.transport, tt.user, tt.params, got, tt.want)
		}
	}
	stamp := "rABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	if n := testing.AllocsPerRun(100, func() { _ = id.RecordRoute(sip.WSS, "flowtoken-0123456789", ";sbdlg=", stamp) }); n != 1 {
		t.Errorf("RecordRoute: %v allocations, want 1", n)
	}
}
