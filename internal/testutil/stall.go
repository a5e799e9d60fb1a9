package testutil

import "io"

// StalledReader sends the first 4 KiB of Data, closes Sent, then sends
// nothing until Release is closed (and then fails): an upload whose client
// went quiet, for tests of what a server does with one (cancel, timeouts).
type StalledReader struct {
	Data    []byte
	Sent    chan struct{}
	Release chan struct{}
	sent    bool
}

// NewStalledReader returns a StalledReader of data with its channels made.
func NewStalledReader(data []byte) *StalledReader {
	return &StalledReader{Data: data, Sent: make(chan struct{}), Release: make(chan struct{})}
}

// Read implements io.Reader.
func (r *StalledReader) Read(p []byte) (int, error) {
	if r.sent {
		<-r.Release
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, r.Data[:min(len(r.Data), 4096)])
	r.sent = true
	close(r.Sent)
	return n, nil
}
