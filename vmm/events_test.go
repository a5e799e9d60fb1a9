package vmm

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/store"
)

// setAfterList installs the publishChanges hook. It is read under
// events.publish, so it is set under it too: the manager's own goroutines
// (the sampler) publish at any time.
func setAfterList(m *Manager, f func(ctx context.Context)) {
	m.events.publish.Lock()
	m.events.afterList = f
	m.events.publish.Unlock()
}

// drain returns the events waiting in ch.
func drain(ch <-chan Event) []Event {
	var out []Event
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, e)
		default:
			return out
		}
	}
}

// TestPublishChangesInOrder: a publisher that read the distros before a
// change must not send its older snapshot after a publisher that read them
// after it. It did when publishChanges read the store before taking the
// bus's lock: subscribers saw the old state last, and the bus kept it as
// what they had been told, so the change never reached them.
//
// The hook parks one publisher between its read and its sends; the change
// and a second publisher happen while it waits.
func TestPublishChangesInOrder(t *testing.T) {
	ctx := context.Background()
	m, db, _ := newTestManager(t, nil)
	// Straight into the store: no operation, no event of its own.
	d := store.Distro{ID: "d1", Name: "one", Version: 1, State: string(StateStopped), Location: t.TempDir(), DefaultUser: "root"}
	if err := db.CreateDistro(ctx, d); err != nil {
		t.Fatal(err)
	}
	snap, ch, cancel, _ := m.Subscribe(ctx)
	defer cancel()
	if len(snap.Distros) != 1 || snap.Distros[0].DefaultUser != "root" {
		t.Fatalf("snapshot = %+v", snap.Distros)
	}

	// Only the publisher the test starts parks: the manager's sampler
	// publishes too, whenever it likes.
	type parkKey struct{}
	parked, release := make(chan struct{}), make(chan struct{})
	setAfterList(m, func(ctx context.Context) {
		if ctx.Value(parkKey{}) != nil {
			close(parked)
			<-release
		}
	})
	var wg sync.WaitGroup
	wg.Go(func() { m.publishChanges(context.WithValue(ctx, parkKey{}, true)) }) // reads "root", then parks
	<-parked

	d.DefaultUser = "alice"
	if err := db.UpdateDistro(ctx, d); err != nil {
		t.Fatal(err)
	}
	second := make(chan struct{})
	wg.Go(func() {
		defer close(second)
		m.publishChanges(ctx) // reads "alice"
	})
	// Before the fix the second publisher finished (and sent "alice") while
	// the first was parked. Now it waits for the first: give it the time it
	// would have taken, then let the first go.
	select {
	case <-second:
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	setAfterList(m, nil)

	var users []string
	for _, e := range drain(ch) {
		if e.Type == "distro" && e.Distro.ID == d.ID {
			users = append(users, e.Distro.DefaultUser)
		}
	}
	if len(users) == 0 || users[len(users)-1] != "alice" {
		t.Errorf("subscriber was told default users %q; the last must be the current one, alice", users)
	}
	snap2, _, cancel2, _ := m.Subscribe(ctx)
	defer cancel2()
	if len(snap2.Distros) != 1 || snap2.Distros[0].DefaultUser != "alice" {
		t.Errorf("a new subscriber's snapshot = %+v, want default user alice", snap2.Distros)
	}
}

// TestPublishOperationEndsOnce: the progress ticker and endOperation both
// publish an operation that ends; subscribers are told of its end once, and
// nothing about it afterwards (no second end, no stale "running").
func TestPublishOperationEndsOnce(t *testing.T) {
	ctx := context.Background()
	m, db, _ := newTestManager(t, nil)
	d := store.Distro{ID: "d1", Name: "one", Version: 1, State: string(StateStopped), Location: t.TempDir(), DefaultUser: "root"}
	if err := db.CreateDistro(ctx, d); err != nil {
		t.Fatal(err)
	}
	_, ch, cancel, _ := m.Subscribe(ctx)
	defer cancel()
	op, _, err := m.beginOperation(KindExport, d, StateExporting)
	if err != nil {
		t.Fatal(err)
	}
	m.endOperation(op, d.ID, nil)
	m.publishOperation(op) // the ticker, late: it read op before it ended
	var statuses []string
	for _, e := range drain(ch) {
		if e.Type == "operation" {
			statuses = append(statuses, e.Operation.Status)
		}
	}
	if want := []string{StatusRunning, StatusSuccess}; len(statuses) != 2 || statuses[0] != want[0] || statuses[1] != want[1] {
		t.Errorf("operation events = %q, want %q", statuses, want)
	}
	snap, _, cancel2, _ := m.Subscribe(ctx)
	defer cancel2()
	if len(snap.Operations) != 0 {
		t.Errorf("snapshot holds ended operations: %+v", snap.Operations)
	}
}
