package location

import (
	"errors"
	"os"
	"syscall"

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
func writeSync(f *os.File, p []byte) (done bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var serr error
	written := 0
	if err := rc.Control(func(fd uintptr) {
		iov := [][]byte{nil}
		for written < len(p) {
			iov[0] = p[written:]
			// Offset -1: at the file's offset, which O_APPEND keeps at its end.
			n, err := unix.Pwritev2(int(fd), iov, -1, unix.RWF_DSYNC)
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
