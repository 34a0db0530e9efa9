//go:build !linux

package location

import "os"

// datasync makes the data written to f durable.
func datasync(f *os.File) error { return f.Sync() }

// writeSync is Linux's one-call write and sync; elsewhere the caller
// writes and syncs.
func writeSync(*os.File, []byte, bool) (done bool, err error) { return false, nil }

// inMemory is Linux's test for tmpfs; elsewhere writes take the usual path.
func inMemory(*os.File) bool { return false }
