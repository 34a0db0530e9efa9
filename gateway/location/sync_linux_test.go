package location

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestJournalInMemory: a journal on tmpfs writes straight to the kernel,
// and its write lands; so does one in the test's temporary directory,
// whichever path its file system gives it (TestMemoryFS judges that).
func TestJournalInMemory(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "location-test-")
	if err != nil {
		t.Fatalf("/dev/shm (tmpfs on Linux) is needed: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	for _, dir := range []string{shm, t.TempDir()} {
		path := filepath.Join(dir, journalName(1))
		f, err := createJournalFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if dir == shm && !f.(osJournal).inMemory {
			t.Errorf("journal in %s (tmpfs): not taken as in memory", dir)
		}
		if err := f.(writeSyncer).WriteSync([]byte("record")); err != nil {
			t.Error(err)
		}
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "record" {
			t.Errorf("journal in %s holds %q, %v; want \"record\"", dir, b, err)
		}
	}
}

// TestMemoryFS: tmpfs and ramfs are in memory, a disk's file systems are
// not, and ramfs's magic, whose top bit is set, is read right from a
// field that is signed and 32 bits wide on some systems.
func TestMemoryFS(t *testing.T) {
	for _, c := range []struct {
		magic uint32
		want  bool
	}{
		{unix.TMPFS_MAGIC, true},
		{unix.RAMFS_MAGIC, true},
		{unix.EXT4_SUPER_MAGIC, false},
		{unix.XFS_SUPER_MAGIC, false},
		{unix.BTRFS_SUPER_MAGIC, false},
		{unix.OVERLAYFS_SUPER_MAGIC, false},
	} {
		var st unix.Statfs_t
		setFSType(&st.Type, c.magic)
		if got := memoryFS(&st); got != c.want {
			t.Errorf("memoryFS(%#x) = %v, want %v", c.magic, got, c.want)
		}
	}
}

// setFSType stores magic in a Statfs_t's Type, whatever its width and
// sign here, as the kernel's 32-bit value.
func setFSType[T ~int32 | ~int64 | ~uint32 | ~uint64](typ *T, magic uint32) { *typ = T(magic) }
