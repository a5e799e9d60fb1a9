package netmgr

import (
	"net/netip"
	"slices"
	"testing"
)

func TestDiffListeners(t *testing.T) {
	a := Listener{Proto: TCP, Address: lo4, Port: 80, Inode: 1}
	b := Listener{Proto: UDP, Address: lo6, Port: 53, Inode: 2}
	b2 := b
	b2.Inode = 3 // the same port, a new socket
	c := Listener{Proto: TCP, Address: lo4, Port: 81, Inode: 4, PID: 7}
	cMoved := c
	cMoved.PID = 8 // another holder of the same socket: no change
	tests := []struct {
		name           string
		prev, cur      []Listener
		added, removed []Listener
	}{
		{"empty", nil, nil, nil, nil},
		{"first scan", nil, []Listener{a, b}, []Listener{a, b}, nil},
		{"all gone", []Listener{a, b}, nil, nil, []Listener{a, b}},
		{"reopened", []Listener{a, b}, []Listener{a, b2}, []Listener{b2}, []Listener{b}},
		{"holder changed", []Listener{c}, []Listener{cMoved}, nil, nil},
	}
	for _, tt := range tests {
		added, removed := DiffListeners(tt.prev, tt.cur)
		if !slices.Equal(added, tt.added) || !slices.Equal(removed, tt.removed) {
			t.Errorf("%s: DiffListeners = +%v -%v, want +%v -%v", tt.name, added, removed, tt.added, tt.removed)
		}
	}
}

func TestHolderOf(t *testing.T) {
	ls := []Listener{
		{Proto: TCP, Address: netip.MustParseAddr("0.0.0.0"), Port: 80, Inode: 1},
		{Proto: TCP, Address: netip.MustParseAddr("0.0.0.0"), Port: 80, Inode: 2, PID: 10, Process: "nginx"},
		{Proto: TCP, Address: lo4, Port: 8080, Inode: 3, PID: 11},
		{Proto: UDP, Address: lo4, Port: 8080, Inode: 4, PID: 12},
		{Proto: TCP, Address: netip.MustParseAddr("::"), Port: 9000, Inode: 5, PID: 13},
		{Proto: TCP, Address: lo6, Port: 443, Inode: 6, PID: 14},
	}
	tests := []struct {
		proto string
		ap    string
		inode uint64 // 0: none
	}{
		{TCP, "127.0.0.1:80", 2},   // wildcard of the same family, attributed one preferred
		{TCP, "0.0.0.0:8080", 3},   // a wildcard bind blocked by a specific one
		{UDP, "127.0.0.1:8080", 4}, // protocol matters
		{TCP, "127.0.0.1:9000", 5}, // [::] may be dual-stack
		{TCP, "[::1]:9000", 5},
		{TCP, "127.0.0.1:443", 0}, // ::1 does not hold 127.0.0.1
		{TCP, "[::]:443", 6},
		{TCP, "127.0.0.1:1", 0},
	}
	for _, tt := range tests {
		h := holderOf(ls, tt.proto, netip.MustParseAddrPort(tt.ap))
		var got uint64
		if h != nil {
			got = h.Inode
		}
		if got != tt.inode {
			t.Errorf("holderOf(%s %s) = inode %d, want %d", tt.proto, tt.ap, got, tt.inode)
		}
	}
}

// FuzzDiagParse feeds arbitrary netlink buffers to the parser: it must never
// panic, and what it returns must hold together.
