package location

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestJournalInMemory: a journal on tmpfs writes straight to the kernel,
// and one in the test's temporary directory as its file system says.
func TestJournalInMemory(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "location-test-")
	if err != nil {
		t.Fatalf("/dev/shm (tmpfs on Linux) is needed: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	tmp := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(tmp, &st); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dir  string
		want bool
	}{
		{shm, true},
		{tmp, memoryFS(&st)},
	} {
		path := filepath.Join(c.dir, journalName(1))
		f, err := createJournalFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.(osJournal).inMemory; got != c.want {
			t.Errorf("journal in %s: inMemory = %v, want %v", c.dir, got, c.want)
		}
		if err := f.(writeSyncer).WriteSync([]byte("record")); err != nil {
			t.Error(err)
		}
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "record" {
			t.Errorf("journal in %s holds %q, %v; want \"record\"", c.dir, b, err)
		}
	}
}
