package api

import (
	"encoding/json"
	"fmt"
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
)

// Event is one server-sent event; Type says which of the other fields is set.
type Event struct {
	Type      EventType
	Snapshot  *Snapshot
	Distro    *Distro
	Removed   *RemovedDistro
	Operation *Operation
	Ports     *PortsEvent
}

// Snapshot is the data of EventSnapshot: every distro, and the operations
// still running.
type Snapshot struct {
	Distros    []Distro    `json:"distros"`
	Operations []Operation `json:"operations"`
}

// RemovedDistro is the data of EventDistroRemoved.
type RemovedDistro struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// PortsEvent is the data of EventPorts: the distro (by name and id) and all its
// listening ports now.
type PortsEvent struct {
	Distro string `json:"distro"`
	ID     string `json:"id"`
	Ports  []Port `json:"ports"`
}

// Data returns the value an event carries, the JSON of its `data:` line.
func (e Event) Data() any {
	switch e.Type {
	case EventSnapshot:
		return e.Snapshot
	case EventDistro:
		return e.Distro
	case EventDistroRemoved:
		return e.Removed
	case EventOperation:
		return e.Operation
	case EventPorts:
		return e.Ports
	}
	return nil
}

// ParseEvent decodes the data of a server-sent event by its name. An event
// name it does not know is an error, so a client can skip what a newer server
// adds.
func ParseEvent(name string, data []byte) (Event, error) {
	e := Event{Type: EventType(name)}
	var v any
	switch e.Type {
	case EventSnapshot:
		e.Snapshot = &Snapshot{}
		v = e.Snapshot
	case EventDistro:
		e.Distro = &Distro{}
		v = e.Distro
	case EventDistroRemoved:
		e.Removed = &RemovedDistro{}
		v = e.Removed
	case EventOperation:
		e.Operation = &Operation{}
		v = e.Operation
	case EventPorts:
		e.Ports = &PortsEvent{}
		v = e.Ports
	default:
		return Event{}, fmt.Errorf("unknown event %q", name)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return Event{}, fmt.Errorf("event %s: %w", name, err)
	}
	return e, nil
}
