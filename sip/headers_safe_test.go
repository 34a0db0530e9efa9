package sip

import "testing"

// TestSafeValue checks that no line break gets into a value through the
// methods that add one.
func TestSafeValue(t *testing.T) {
	for _, v := range []string{"a\r\nVia: x", "a\nb", "a\rb", "\r", "\n", "ab\r\n"} {
		var h Headers
		h.Add("Subject", v)
		h.Set("Server", v)
		h.Prepend("X-A", v)
		for _, f := range h.Fields() {
			for i := 0; i < len(f.Value); i++ {
				if f.Value[i] == '\r' || f.Value[i] == '\n' {
					t.Fatalf("%s: %q kept a line break", f.Name, f.Value)
				}
			}
			if len(f.Value) != len(v) {
				t.Errorf("%s: %q, want %d bytes", f.Name, f.Value, len(v))
			}
		}
	}
	if got := safeValue("plain value"); got != "plain value" {
		t.Errorf("safeValue changed a plain value: %q", got)
	}
}

// TestHasTokenInPlace: HasToken finds an item of a list header, in any
// case, without allocating (a registrar asks it of every REGISTER), and
// no empty item.
func TestHasTokenInPlace(t *testing.T) {
	var h Headers
	h.Add("Supported", "path, ,outbound")
	h.Add("Supported", " GRUU ")
	for tok, want := range map[string]bool{"gruu": true, "path": true, "Outbound": true, "": false, "timer": false} {
		if got := h.HasToken("Supported", tok); got != want {
			t.Errorf("HasToken(%q) = %v, want %v", tok, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = h.HasToken("Supported", "gruu") }); n != 0 {
		t.Errorf("HasToken allocates %v times", n)
	}
}
