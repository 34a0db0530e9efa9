package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalid is wrapped by every error that means the file is not a valid
// configuration (as opposed to one that cannot be read).
var ErrInvalid = errors.New("invalid config file")

// Error lists the problems of a configuration file.
type Error struct {
	// Path is the file's path, "" for Parse.
	Path string
	// Problems has one entry per fault, in the order of their lines.
	Problems []*Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(ErrInvalid.Error())
	if len(e.Problems) == 1 && !strings.Contains(e.Problems[0].Error(), "\n") {
		b.WriteString(": ")
		b.WriteString(e.Problems[0].Error())
		return b.String()
	}
	b.WriteString(":")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(p.Error(), "\n", "\n  "))
	}
	return b.String()
}

// Unwrap returns ErrInvalid and the problems, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, len(e.Problems)+1)
	errs = append(errs, ErrInvalid)
	for _, p := range e.Problems {
		errs = append(errs, p)
	}
	return errs
}

// Problem is one fault in the file.
type Problem struct {
	// Line and Column locate the fault, 1-based; 0 when unknown (a value
	// written in an inline table, for instance). Column is known only for
	// the faults the TOML parser reports.
	Line, Column int
	// Key is the key concerned, e.g. "trunk.host"; "" when the fault is
	// not about one key.
	Key string
	// Msg says what is wrong and how to fix it.
	Msg string
	// Excerpt is the TOML parser's excerpt of the file around the fault,
	// when it gave one.
	Excerpt string
}

func (p *Problem) Error() string {
	var s string
	switch {
	case p.Line > 0 && p.Column > 0:
		s = fmt.Sprintf("line %d, column %d: %s", p.Line, p.Column, p.Msg)
	case p.Line > 0:
		s = fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	default:
		s = p.Msg
	}
	if p.Excerpt != "" {
		s += "\n" + strings.TrimRight(p.Excerpt, "\n")
	}
	return s
}

// sortProblems orders problems by line, those without a line last, keeping
// the order of detection among equals.
func sortProblems(ps []*Problem) {
	slices.SortStableFunc(ps, func(a, b *Problem) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = int(^uint(0) >> 1)
		}
		if lb == 0 {
			lb = int(^uint(0) >> 1)
		}
		return cmp.Compare(la, lb)
	})
}
