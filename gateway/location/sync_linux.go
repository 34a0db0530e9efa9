package location

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// datasync makes the data written to f durable, and the size, without the
// other metadata a full fsync also writes (modification time).
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// writeSync appends p to f (opened with O_APPEND) and makes it durable as
// a write and datasync do, in one system call: pwritev2 with RWF_DSYNC
// returns once the data and the size are on disk, like a write on a file
// opened O_DSYNC. done is false, with nothing written, when the kernel or
// the file system does not take the flag; the caller then writes and
// syncs.
//
// raw says the call cannot wait on a device (see inMemory), so it goes
// straight to the kernel, as the UDP transport's sends do (internal/mmsg),
// rather than through the scheduler's system call path: that path wakes
// the runtime's monitor thread whenever it sleeps, and with a journal
// write per registration that was about 5 % of the gateway's CPU at
// 6,000 REGISTER/s under half a CPU (docs/performance.md). A write that
// may wait on a disk must take the scheduler's path, which gives the P
// to other goroutines meanwhile.
func writeSync(f *os.File, p []byte, raw bool) (done bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var serr error
	written := 0
	if err := rc.Control(func(fd uintptr) {
		for written < len(p) {
			n, err := pwritev2(fd, p[written:], raw)
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = err
				return
			case n == 0:
				serr = unix.EIO
				return
			}
			written += n
		}
	}); err != nil {
		return false, err
	}
	if serr != nil {
		if written == 0 && (errors.Is(serr, unix.ENOSYS) || errors.Is(serr, unix.EOPNOTSUPP) || errors.Is(serr, unix.EINVAL)) {
			return false, nil
		}
		return true, &os.PathError{Op: "pwritev2", Path: f.Name(), Err: serr}
	}
	return true, nil
}

// pwritev2 writes p, which is not empty, at the file's offset (-1), which
// O_APPEND keeps at its end, with RWF_DSYNC.
func pwritev2(fd uintptr, p []byte, raw bool) (int, error) {
	if !raw {
		return unix.Pwritev2(int(fd), [][]byte{p}, -1, unix.RWF_DSYNC)
	}
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	// The offset -1 in two words, low then high, as the system call
	// takes it: all ones in both on a 32-bit system; a 64-bit kernel
	// reads the low word only.
	n, _, errno := unix.RawSyscall6(unix.SYS_PWRITEV2, fd, uintptr(unsafe.Pointer(&iov)), 1, ^uintptr(0), ^uintptr(0), unix.RWF_DSYNC)
	runtime.KeepAlive(p)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// inMemory reports whether f's file system keeps its files in memory
// only (tmpfs, ramfs: /dev/shm, a container's memory-backed volume),
// where a write is a copy that never waits on a device.
func inMemory(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var st unix.Statfs_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstatfs(int(fd), &st) }); err != nil || serr != nil {
		return false
	}
	return memoryFS(&st)
}

// memoryFS reports whether st is of tmpfs or ramfs. The magic numbers
// are 32 bits, in a field that is 32 bits wide on some systems and signed.
func memoryFS(st *unix.Statfs_t) bool {
	t := uint32(st.Type)
	return t == unix.TMPFS_MAGIC || t == unix.RAMFS_MAGIC
}
