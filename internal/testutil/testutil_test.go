package testutil

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, 5*time.Second, "the third poll", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestWaitForTimesOut(t *testing.T) {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		WaitFor(r, 30*time.Millisecond, "never", func() bool { return false })
	}()
	<-done
	if !strings.Contains(r.msg, "still waiting for never") {
		t.Errorf("Fatalf format = %q", r.msg)
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("ab"))
				_ = b.String() // a reader at the same time: -race checks it
			}
		})
	}
	wg.Wait()
	if b.Len() != 800 || strings.Count(b.String(), "ab") != 400 {
		t.Errorf("buffer holds %d bytes: %q…", b.Len(), b.String()[:16])
	}
}

func TestSocketPair(t *testing.T) {
	a, b := SocketPair(t)
	go func() {
		a.Write([]byte("ping"))
		a.Close()
	}()
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "ping" {
		t.Errorf("read %q, %v; want ping", got, err)
	}
}
