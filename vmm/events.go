package vmm

import (
	"context"
	"reflect"
	"sync"
	"time"
)

// Event is one change pushed to subscribers (the dashboard's SSE stream).
type Event struct {
	// Type is "distro" (Distro set), "distro-removed" (Removed set),
	// "operation" (Operation set) or "distro-oom" (OOM set).
	Type      string         `json:"type"`
	Distro    *Distro        `json:"distro,omitempty"`
	Removed   *RemovedDistro `json:"removed,omitempty"`
	Operation *OperationInfo `json:"operation,omitempty"`
	OOM       *OOMEvent      `json:"oom,omitempty"`
}

// RemovedDistro names a distro that is gone.
type RemovedDistro struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Snapshot is the whole state a new subscriber starts from.
type Snapshot struct {
	Distros    []Distro        `json:"distros"`
	Operations []OperationInfo `json:"operations"`
}

// subscriberBuffer is how many events may wait for a slow subscriber. One that
// falls further behind is dropped (its channel closed): it reconnects and starts
// again from a fresh snapshot, which is cheaper and simpler than an unbounded queue.
const subscriberBuffer = 256

// eventBus is the manager's subscribers and what they were last told.
type eventBus struct {
	// publish serializes publishChanges from its read of the distros to its
	// last send, so that publishers send their snapshots in the order they
	// read them: one that read the store earlier never sends after one that
	// read it later (which would show subscribers an older state last, and
	// leave last stale until the next change). It is taken before mu and
	// held across a store query; mu is not, so subscribing and operation
	// progress do not wait for the query.
	publish sync.Mutex

	mu   sync.Mutex
	subs map[chan Event]struct{}
	last map[string]Distro        // what subscribers were last told, by id
	ops  map[string]OperationInfo // running operations as last told, by id

	// afterList, when set (by tests), runs in publishChanges between its
	// read of the distros and its sends, with publishChanges's context: the
	// point where a publisher that read older state could be overtaken.
	afterList func(ctx context.Context)
}

// Subscribe returns the current snapshot and a channel of the changes after it.
// The channel is closed when the subscriber falls behind or the manager closes;
// cancel stops the subscription.
func (m *Manager) Subscribe(ctx context.Context) (Snapshot, <-chan Event, func(), error) {
	m.publishChanges(ctx)
	m.publishEndedOperations()
	ch := make(chan Event, subscriberBuffer)
	m.events.mu.Lock()
	snap := Snapshot{Distros: []Distro{}, Operations: []OperationInfo{}}
	for _, d := range m.events.last {
		snap.Distros = append(snap.Distros, d)
	}
	for _, op := range m.events.ops {
		snap.Operations = append(snap.Operations, op)
	}
	m.events.subs[ch] = struct{}{}
	m.events.mu.Unlock()
	sortDistros(snap.Distros)
	cancel := func() {
		m.events.mu.Lock()
		if _, ok := m.events.subs[ch]; ok {
			delete(m.events.subs, ch)
			close(ch)
		}
		m.events.mu.Unlock()
	}
	return snap, ch, cancel, nil
}

// publishEndedOperations sends the end of every tracked operation that has
// ended but whose end is not sent yet: endOperation lets waiters go (Done)
// before it publishes, and a snapshot taken in between must not show such an
// operation as running.
func (m *Manager) publishEndedOperations() {
	m.events.mu.Lock()
	ids := make([]string, 0, len(m.events.ops))
	for id := range m.events.ops {
		ids = append(ids, id)
	}
	m.events.mu.Unlock()
	for _, id := range ids {
		m.mu.Lock()
		op := m.ops[id]
		m.mu.Unlock()
		if op != nil {
			select {
			case <-op.Done():
				m.publishOperation(op)
			default:
			}
		}
	}
}

// send delivers e to every subscriber; callers hold m.events.mu.
func (m *Manager) send(e Event) {
	for ch := range m.events.subs {
		select {
		case ch <- e:
		default:
			delete(m.events.subs, ch)
			close(ch)
		}
	}
}

// publishChanges compares every distro with what subscribers last saw and sends
// what changed. Calling it after any change is cheap (one query) and can never
// miss or double an event.
func (m *Manager) publishChanges(ctx context.Context) {
	m.events.publish.Lock()
	defer m.events.publish.Unlock()
	list, err := m.List(context.WithoutCancel(ctx))
	if err != nil {
		return
	}
	if m.events.afterList != nil {
		m.events.afterList(ctx)
	}
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	seen := map[string]bool{}
	for _, d := range list {
		seen[d.ID] = true
		if old, ok := m.events.last[d.ID]; ok && reflect.DeepEqual(old, d) {
			continue
		}
		m.events.last[d.ID] = d
		d := d
		m.send(Event{Type: "distro", Distro: &d})
	}
	for id, d := range m.events.last {
		if !seen[id] {
			delete(m.events.last, id)
			m.send(Event{Type: "distro-removed", Removed: &RemovedDistro{ID: id, Name: d.Name}})
		}
	}
}

// publishOperation sends op's snapshot when it changed since the last one sent.
func (m *Manager) publishOperation(op *Operation) {
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	// Read under the lock, for the reason publishChanges holds publish: a
	// snapshot read earlier (by the progress ticker) must not be sent after
	// a later one (the end, sent by endOperation).
	info := op.Info()
	old, ok := m.events.ops[info.ID]
	if ok && old == info {
		return
	}
	if !ok && info.Status != StatusRunning {
		// Its end was sent already (beginOperation sends every operation
		// as running before it can end, so one that is not tracked and
		// has ended was told): the ticker and endOperation both publish
		// an operation that ends, and it ends once.
		return
	}
	if info.Status == StatusRunning {
		m.events.ops[info.ID] = info
	} else {
		delete(m.events.ops, info.ID)
	}
	m.send(Event{Type: "operation", Operation: &info})
}

// runProgress publishes the progress of running operations a few times a second.
func (m *Manager) runProgress(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var running []*Operation
		for _, op := range m.opsByDistro {
			running = append(running, op)
		}
		m.mu.Unlock()
		for _, op := range running {
			m.publishOperation(op)
		}
	}
}

// closeSubscribers ends every subscription (at manager close).
func (m *Manager) closeSubscribers() {
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	for ch := range m.events.subs {
		delete(m.events.subs, ch)
		close(ch)
	}
}
