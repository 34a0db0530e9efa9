package trunk

import (
	"fmt"
	"regexp"
	"strings"
)

// DialPlan picks the trunk of an outbound call from the dialed number,
// with the routes of the configuration file. It is immutable and safe for
// concurrent use; a reload builds a new one.
type DialPlan struct {
	routes []route
}

type route struct {
	re     *regexp.Regexp
	strip  int
	prefix string
	trunk  string
}

// NewDialPlan compiles routes, keeping their order. It fails on a route
// that the config file's validation would have rejected: a bad pattern, a negative strip, or
// no trunk.
func NewDialPlan(routes []Route) (*DialPlan, error) {
	p := &DialPlan{routes: make([]route, 0, len(routes))}
	for i, r := range routes {
		re, err := r.Regexp()
		if err != nil {
			return nil, fmt.Errorf("trunk: route %d: pattern %q: %w", i+1, r.Pattern, err)
		}
		if r.Strip < 0 || r.Trunk == "" {
			return nil, fmt.Errorf("trunk: route %d: negative strip or no trunk", i+1)
		}
		p.routes = append(p.routes, route{re: re, strip: r.Strip, prefix: r.Prefix, trunk: r.Trunk})
	}
	return p, nil
}

// Match returns the trunk of the first route whose pattern matches number,
// and the number to dial on it: number without its first Strip characters,
// after Prefix. Visual separators (space - . ( ), RFC 3966) are removed
// from number first; a leading '+' stays, so a pattern can tell E.164
// numbers apart. A number that is not a dial string (digits, '*', '#',
// with an optional leading '+') matches no route; a route whose Strip
// leaves nothing to dial does not match.
func (p *DialPlan) Match(number string) (trunk, dialed string, ok bool) {
	n, valid := dialString(number)
	if !valid {
		return "", "", false
	}
	for _, r := range p.routes {
		if r.strip > len(n) || !r.re.MatchString(n) {
			continue
		}
		if dialed = r.prefix + n[r.strip:]; dialed == "" {
			continue
		}
		return r.trunk, dialed, true
	}
	return "", "", false
}

// dialString removes the visual separators of number and checks that the
// rest is a dial string.
func dialString(number string) (string, bool) {
	if strings.ContainsAny(number, " -.()") {
		number = strings.Map(func(r rune) rune {
			if strings.ContainsRune(" -.()", r) {
				return -1
			}
			return r
		}, number)
	}
	if number == "" || number == "+" {
		return "", false
	}
	for i := 0; i < len(number); i++ {
		c := number[i]
		if c >= '0' && c <= '9' || c == '*' || c == '#' || c == '+' && i == 0 {
			continue
		}
		return "", false
	}
	return number, true
}
