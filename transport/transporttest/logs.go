package transporttest

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// Logs collects the lines of a text logger (slog.TextHandler), for a test
// to wait for one or to read them all. Its zero value is ready to use; it
// is safe for concurrent use.
type Logs struct {
	guarded
	text []byte
	next int // where the lines Line has not passed over begin
}

// Logger returns a logger that writes every record to l, Debug ones
// included, as a line of text.
func (l *Logs) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Write appends p, one or more lines, to l.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text = append(l.text, p...)
	l.changedLocked()
	return len(p), nil
}

// String returns every line written.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.text)
}

// Line returns the next line that contains s, waiting up to Timeout for
// it; the lines before it are passed over for good, so that a test can
// wait for each of several alike lines in turn. It fails the test when
// no such line comes. Quote a message as the text handler does:
// `msg="dropped message"`.
func (l *Logs) Line(t testing.TB, s string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	var line string
	if l.wait(ctx, func() bool {
		for {
			end := bytes.IndexByte(l.text[l.next:], '\n')
			if end < 0 {
				return false
			}
			line = string(l.text[l.next : l.next+end])
			l.next += end + 1
			if strings.Contains(line, s) {
				return true
			}
		}
	}) != nil {
		t.Fatalf("no log line with %q within %v; the log:\n%s", s, Timeout, l.String())
	}
	return line
}
