package api

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType is the `event:` name of a server-sent event of GET /events.
type EventType string

// The events of GET /events.
const (
	// EventSnapshot comes first on every connect, and so after every
	// reconnect: the whole state, which replaces what a client knew.
	EventSnapshot EventType = "snapshot"
	// EventDistro: a distro changed (Distro).
	EventDistro EventType = "distro"
	// EventDistroRemoved: a distro is gone (Removed).
	EventDistroRemoved EventType = "distro-removed"
	// EventOperation: an operation progressed or ended (Operation).
	EventOperation EventType = "operation"
	// EventPorts: a running distro's ports or their counters changed (Ports);
	// a distro that stops is sent once with none.
	EventPorts EventType = "ports"
	// EventDistroOOM: the kernel's OOM killer ended a process of a running
	// distro, which was at its memory_max (OOM).
	EventDistroOOM EventType = "distro-oom"
)

// Event is one server-sent event; Type says which of the other fields is set.
type Event struct {
	// Type is the event's name.
	Type EventType
	// Snapshot is set for EventSnapshot, Distro for EventDistro, Removed for
	// EventDistroRemoved, Operation for EventOperation, Ports for EventPorts, OOM for
	// EventDistroOOM.
	Snapshot  *Snapshot
	Distro    *Distro
	Removed   *RemovedDistro
	Operation *Operation
	Ports     *PortsEvent
	OOM       *OOMEvent
}

// OOMEvent is the data of EventDistroOOM.
type OOMEvent struct {
	// Distro and ID name the distro.
	Distro string `json:"distro"`
	ID     string `json:"id"`
	// OOMKills counts the processes killed since the distro started.
	OOMKills int64 `json:"oom_kills"`
	// At is when the server saw the count rise.
	At time.Time `json:"at"`
}

// Snapshot is the data of EventSnapshot: every distro, and the operations
// still running.
type Snapshot struct {
	// Distros are all the distros; Operations the running operations.
	Distros    []Distro    `json:"distros"`
	Operations []Operation `json:"operations"`
}

// RemovedDistro is the data of EventDistroRemoved.
type RemovedDistro struct {
	// ID and Name are the removed distro's.
	ID   string `json:"id"`
	Name string `json:"name"`
}

// PortsEvent is the data of EventPorts: the distro (by name and id) and all its
// listening ports now.
type PortsEvent struct {
	// Distro and ID name the distro.
	Distro string `json:"distro"`
	ID     string `json:"id"`
	// Ports are all its listening ports; none once it stopped.
	Ports []Port `json:"ports"`
}

// Data returns the value an event carries, the JSON of its `data:` line.
func (e Event) Data() any { return e.payload(false) }

// payload returns the field Type selects, allocated first when alloc; nil
// for a type it does not know.
func (e *Event) payload(alloc bool) any {
	switch e.Type {
	case EventSnapshot:
		if alloc {
			e.Snapshot = new(Snapshot)
		}
		return e.Snapshot
	case EventDistro:
		if alloc {
			e.Distro = new(Distro)
		}
		return e.Distro
	case EventDistroRemoved:
		if alloc {
			e.Removed = new(RemovedDistro)
		}
		return e.Removed
	case EventOperation:
		if alloc {
			e.Operation = new(Operation)
		}
		return e.Operation
	case EventPorts:
		if alloc {
			e.Ports = new(PortsEvent)
		}
		return e.Ports
	case EventDistroOOM:
		if alloc {
			e.OOM = new(OOMEvent)
		}
		return e.OOM
	}
	return nil
}

// ParseEvent decodes the data of a server-sent event by its name. An event
// name it does not know is an error, so a client can skip what a newer server
// adds.
func ParseEvent(name string, data []byte) (Event, error) {
	e := Event{Type: EventType(name)}
	v := e.payload(true)
	if v == nil {
		return Event{}, fmt.Errorf("unknown event %q", name)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return Event{}, fmt.Errorf("event %s: %w", name, err)
	}
	return e, nil
}
