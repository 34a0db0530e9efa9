package sipudp

// ReadBatch is readBatch, for the tests that fill a read.
const ReadBatch = readBatch

// Writes is how many system calls sent datagrams on t.
func Writes(t *Transport) uint64 { return t.writes.Load() }
