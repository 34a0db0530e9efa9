package trunk

import "testing"

func TestNormalizeNumber(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"+15551230001", "15551230001", true},
		{"15551230001", "15551230001", true},
		{"+1 (555) 123-0001", "15551230001", true},
		{"1.555.123.0001", "15551230001", true},
		{"+15551230001;npdi;rn=+1555", "15551230001", true},
		{"100", "100", true},
		{"", "", false},
		{"+", "", false},
		{"alice", "", false},
		{"++1555", "", false},
		{"1555+", "", false},
		{"*67555", "", false},
		{"１２３", "", false},
	}
	for _, tt := range tests {
		got, ok := NormalizeNumber(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NormalizeNumber(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRouteRegexp(t *testing.T) {
	re, err := Route{Pattern: `9(\d+)|0`}.Regexp()
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"912": true, "0": true, "x912": false, "9120x": false, "00": false} {
		if re.MatchString(s) != want {
			t.Errorf("%q: match = %v", s, !want)
		}
	}
	if _, err := (Route{Pattern: `a)|(b`}).Regexp(); err == nil {
		t.Error("a pattern with unbalanced parentheses compiled")
	}
}
