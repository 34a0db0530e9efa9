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
