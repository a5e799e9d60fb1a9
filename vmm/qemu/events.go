package qemu

import (
	"context"
	"fmt"
	"sync"
)

// eventHub hands QMP events to the callers waiting for one. Waiters register
// before they send the command whose event they expect, so none is missed.
type eventHub struct {
	mu      sync.Mutex
	waiters map[*eventWaiter]struct{}
	closed  bool
}

type eventWaiter struct {
	match func(Event) bool
	got   chan Event // buffered 1
}

func newEventHub() *eventHub { return &eventHub{waiters: map[*eventWaiter]struct{}{}} }

// run delivers events from ch until it closes (the QMP connection ended),
// then wakes every waiter with a closed channel.
func (h *eventHub) run(ch <-chan Event) {
	for ev := range ch {
		h.mu.Lock()
		for w := range h.waiters {
			if w.match(ev) {
				w.got <- ev
				delete(h.waiters, w)
			}
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.closed = true
	for w := range h.waiters {
		close(w.got)
		delete(h.waiters, w)
	}
	h.mu.Unlock()
}

// expect registers interest in the first event that match accepts; wait
// then waits for it.
func (h *eventHub) expect(match func(Event) bool) *eventWaiter {
	w := &eventWaiter{match: match, got: make(chan Event, 1)}
	h.mu.Lock()
	if h.closed {
		close(w.got)
	} else {
		h.waiters[w] = struct{}{}
	}
	h.mu.Unlock()
	return w
}

func (h *eventHub) cancel(w *eventWaiter) {
	h.mu.Lock()
	delete(h.waiters, w)
	h.mu.Unlock()
}

// wait returns the matched event, or an error when ctx ends or the QMP
// connection does first.
func (h *eventHub) wait(ctx context.Context, w *eventWaiter) (Event, error) {
	select {
	case ev, ok := <-w.got:
		if !ok {
			return Event{}, fmt.Errorf("qmp: connection ended before the event")
		}
		return ev, nil
	case <-ctx.Done():
		h.cancel(w)
		return Event{}, context.Cause(ctx)
	}
}
