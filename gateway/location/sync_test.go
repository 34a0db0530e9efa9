package location

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// BenchmarkDatasync measures what one journal sync costs on the disk under
// the test's temporary directory (set TMPDIR to measure another): a
// 300-byte append, about one REGISTER's record, and its fdatasync. This is
// the floor of a Put that waits alone.
func BenchmarkDatasync(b *testing.B) {
	f, err := createJournalFile(filepath.Join(b.TempDir(), journalName(1)))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, 300)
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteSync is BenchmarkDatasync in the one call the journal
// makes (pwritev2 with RWF_DSYNC on Linux).
func BenchmarkWriteSync(b *testing.B) {
	f, err := createJournalFile(filepath.Join(b.TempDir(), journalName(1)))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ws := f.(writeSyncer)
	rec := make([]byte, 300)
	b.ResetTimer()
	for b.Loop() {
		if err := ws.WriteSync(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWriteSync: the one-call write appends after what was written before,
// in order, and on Linux is really one call (not the fallback), by the
// scheduler's path and straight to the kernel alike.
func TestWriteSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), journalName(1))
	f, err := createJournalFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("first,")); err != nil {
		t.Fatal(err)
	}
	if err := f.(writeSyncer).WriteSync([]byte("second,")); err != nil {
		t.Fatal(err)
	}
	want := "first,second,"
	if runtime.GOOS == "linux" {
		for _, raw := range []bool{false, true} {
			p := fmt.Sprintf("raw=%v,", raw)
			done, err := writeSync(f.(osJournal).f, []byte(p), raw)
			if !done || err != nil {
				t.Fatalf("writeSync(raw=%v) = %v, %v: pwritev2 with RWF_DSYNC not taken on this kernel", raw, done, err)
			}
			want += p
		}
	}
	if err := f.(writeSyncer).WriteSync([]byte("third")); err != nil {
		t.Fatal(err)
	}
	want += "third"
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("journal holds %q, want %q", got, want)
	}
}
