package sipudp

// ReadBatch is readBatch, for the tests that fill a read.
const ReadBatch = readBatch
