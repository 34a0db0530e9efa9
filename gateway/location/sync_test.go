package location

import (
	"path/filepath"
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
