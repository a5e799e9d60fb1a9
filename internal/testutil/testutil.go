// Package testutil holds the small helpers that tests of several packages
// share: waiting on a condition with a deadline (WaitFor), a buffer that a
// process's output and a test can use at once (SyncBuffer), and a connected
// pair of unix sockets (SocketPair).
//
// It imports nothing of subsys, so that every package's tests can use it —
// vmm/agent's own (package agent) tests too, which could not if it imported
// the agent. Helpers that need the agent live in vmm/vmmtest. Only tests
// import this package.
package testutil

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// pollInterval is how often WaitFor checks its condition: short enough that
// a test does not idle long after the condition holds, long enough not to
// take a core from the code under test on a small machine.
const pollInterval = 10 * time.Millisecond

// WaitFor polls cond until it holds, and fails the test (t.Fatalf, naming
// what) when it still does not after timeout. Use it instead of a sleep: a
// test waits only as long as it must, and a slow machine gets the whole
// timeout instead of a guess.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", timeout, what)
		}
		time.Sleep(pollInterval)
	}
}

// SyncBuffer is a bytes.Buffer that is safe for concurrent use: a goroutine
// (a process's output pump, a logger) writes while the test reads. The zero
// value is ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Len returns how many bytes were written so far.
func (b *SyncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Len()
}

// SocketPair returns two connected unix stream sockets, closed when the test
// ends. Unlike net.Pipe they are real sockets — buffered by the kernel,
// pollable, with deadlines and half-close — so code that serves a unix
// socket (the agent does) runs on them as it does in production.
func SocketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	a, b, err := NewSocketPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}
