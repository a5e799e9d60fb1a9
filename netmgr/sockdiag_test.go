package netmgr

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"testing"
)

// nlmsg encodes one netlink message, padded to 4 bytes.
func nlmsg(typ, flags uint16, seq uint32, body []byte) []byte {
	n := nlmsgHdrLen + len(body)
	b := make([]byte, (n+3)&^3)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	copy(b[nlmsgHdrLen:], body)
	return b
}

// sock describes an inet_diag_msg for the tests.
type sock struct {
	state        uint8
	local, peer  string // addr:port
	ifindex, uid uint32
	inode        uint32
	attrs        []byte // trailing rtattrs, ignored by the parser
}

// diagMsgBody encodes s as struct inet_diag_msg.
func diagMsgBody(s sock) []byte {
	b := make([]byte, diagMsgLen)
	l, p := netip.MustParseAddrPort(s.local), netip.MustParseAddrPort(s.peer)
	family := uint8(afInet6)
	if l.Addr().Is4() {
		family = afInet
	}
	b[0], b[1] = family, s.state
	id := b[4:]
	binary.BigEndian.PutUint16(id[0:], l.Port())
	binary.BigEndian.PutUint16(id[2:], p.Port())
	put := func(dst []byte, a netip.Addr) {
		if a.Is4() {
			a4 := a.As4()
			copy(dst, a4[:])
		} else {
			a16 := a.As16()
			copy(dst, a16[:])
		}
	}
	put(id[4:20], l.Addr())
	put(id[20:36], p.Addr())
	ne := binary.NativeEndian
	ne.PutUint32(id[36:], s.ifindex)
	ne.PutUint32(b[64:], s.uid)
	ne.PutUint32(b[68:], s.inode)
	return append(b, s.attrs...)
}

func diagMsg(seq uint32, flags uint16, s sock) []byte {
	return nlmsg(sockDiagByFamily, nlmFMultiForTest|flags, seq, diagMsgBody(s))
}

const nlmFMultiForTest = 0x2

func done(seq uint32) []byte { return nlmsg(nlmsgDone, nlmFMultiForTest, seq, []byte{0, 0, 0, 0}) }

func errMsg(seq uint32, code int32) []byte {
	body := make([]byte, 4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(body, uint32(code))
	return nlmsg(nlmsgError, 0, seq, body)
}

// withLen overwrites the length field of a message.
func withLen(b []byte, n uint32) []byte {
	binary.NativeEndian.PutUint32(b, n)
	return b
}

func cat(bs ...[]byte) []byte { return slices.Concat(bs...) }

func TestDiagParse(t *testing.T) {
	listen4 := sock{state: tcpListen, local: "127.0.0.1:8080", peer: "0.0.0.0:0", uid: 1000, inode: 4242}
	listen6 := sock{state: tcpListen, local: "[::]:443", peer: "[::]:0", inode: 7, attrs: []byte{8, 0, 1, 0, 1, 2, 3, 4}}
	mapped := sock{state: tcpListen, local: "[::ffff:10.0.0.1]:22", peer: "[::]:0", inode: 8}
	linkLocal := sock{state: tcpClose, local: "[fe80::1]:5353", peer: "[::]:0", ifindex: 3, inode: 9}
	tests := []struct {
		name              string
		proto             string
		in                []byte
		want              []Socket
		done, interrupted bool
		wantErr           error // errors.Is target; nil: no error
		wantAnyErr        bool
		wantListening     []bool
		splitAt           int // >0: feed in two buffers
	}{
		{
			name: "tcp v4 and v6", proto: TCP,
			in: cat(diagMsg(1, 0, listen4), diagMsg(1, 0, listen6), done(1)),
			want: []Socket{
				{Proto: TCP, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242},
				{Proto: TCP, State: tcpListen, Local: netip.MustParseAddrPort("[::]:443"), Remote: netip.MustParseAddrPort("[::]:0"), Inode: 7},
			},
			done: true, wantListening: []bool{true, true},
		},
		{
			name: "split across buffers", proto: TCP,
			in: cat(diagMsg(1, 0, listen4), diagMsg(1, 0, listen6), done(1)),
			want: []Socket{
				{Proto: TCP, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242},
				{Proto: TCP, State: tcpListen, Local: netip.MustParseAddrPort("[::]:443"), Remote: netip.MustParseAddrPort("[::]:0"), Inode: 7},
			},
			done: true, splitAt: len(diagMsg(1, 0, listen4)),
		},
		{
			name: "mapped address reported as IPv4", proto: TCP,
			in:   cat(diagMsg(1, 0, mapped), done(1)),
			want: []Socket{{Proto: TCP, State: tcpListen, Local: netip.MustParseAddrPort("10.0.0.1:22"), Remote: netip.MustParseAddrPort("[::]:0"), Inode: 8}},
			done: true,
		},
		{
			name: "udp unconnected and connected", proto: UDP,
			in: cat(
				diagMsg(5, 0, linkLocal),
				diagMsg(5, 0, sock{state: tcpEstab, local: "127.0.0.1:40000", peer: "127.0.0.1:53", inode: 10}),
				done(5)),
			want: []Socket{
				{Proto: UDP, State: tcpClose, Local: netip.MustParseAddrPort("[fe80::1]:5353"), Remote: netip.MustParseAddrPort("[::]:0"), IfIndex: 3, Inode: 9},
				{Proto: UDP, State: tcpEstab, Local: netip.MustParseAddrPort("127.0.0.1:40000"), Remote: netip.MustParseAddrPort("127.0.0.1:53"), Inode: 10},
			},
			done: true, wantListening: []bool{true, false},
		},
		{
			name: "other sequence skipped", proto: TCP,
			in:   cat(diagMsg(9, 0, listen6), diagMsg(1, 0, listen4), done(9), done(1)),
			want: []Socket{{Proto: TCP, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242}},
			done: true,
		},
		{
			name: "noop and ack skipped, nothing after done read", proto: TCP,
			in:   cat(nlmsg(nlmsgNoop, 0, 1, nil), errMsg(1, 0), done(1), diagMsg(1, 0, listen4)),
			done: true,
		},
		{
			name: "interrupted", proto: TCP,
			in:   cat(diagMsg(1, nlmFDumpIntr, listen4), done(1)),
			want: []Socket{{Proto: TCP, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242}},
			done: true, interrupted: true,
		},
		{
			name: "not done yet", proto: TCP,
			in:   diagMsg(1, 0, listen4),
			want: []Socket{{Proto: TCP, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242}},
		},
		{name: "kernel error", proto: TCP, in: errMsg(1, -int32(syscall.EACCES)), wantErr: syscall.EACCES},
		{name: "done with error", proto: TCP, in: nlmsg(nlmsgDone, 0, 1, []byte{0xfe, 0xff, 0xff, 0xff}), wantAnyErr: true, done: true},
		{name: "short error", proto: TCP, in: nlmsg(nlmsgError, 0, 1, []byte{1}), wantAnyErr: true},
		{name: "overrun", proto: TCP, in: nlmsg(nlmsgOverrun, 0, 1, nil), wantAnyErr: true},
		{name: "unknown type", proto: TCP, in: nlmsg(99, 0, 1, nil), wantAnyErr: true},
		{name: "short header", proto: TCP, in: []byte{1, 2, 3}, wantAnyErr: true},
		{name: "length past buffer", proto: TCP, in: diagMsg(1, 0, listen4)[:40], wantAnyErr: true},
		{name: "length below header", proto: TCP, in: withLen(nlmsg(nlmsgNoop, 0, 1, nil), 8), wantAnyErr: true},
		{name: "short inet_diag_msg", proto: TCP, in: nlmsg(sockDiagByFamily, 0, 1, make([]byte, 40)), wantAnyErr: true},
		{name: "bad family", proto: TCP, in: nlmsg(sockDiagByFamily, 0, 1, make([]byte, diagMsgLen)), wantAnyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &diagDump{seq: 1, proto: tt.proto}
			if tt.proto == UDP {
				d.seq = 5
			}
			var err error
			if tt.splitAt > 0 {
				if err = d.parse(tt.in[:tt.splitAt]); err == nil {
					err = d.parse(tt.in[tt.splitAt:])
				}
			} else {
				err = d.parse(tt.in)
			}
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("parse = %v, want %v", err, tt.wantErr)
				}
				return
			case tt.wantAnyErr:
				if err == nil {
					t.Fatalf("parse = nil error, want one; sockets %+v", d.socks)
				}
				return
			case err != nil:
				t.Fatalf("parse: %v", err)
			}
			if !slices.Equal(d.socks, tt.want) {
				t.Fatalf("sockets = %+v\nwant %+v", d.socks, tt.want)
			}
			if d.done != tt.done || d.interrupted != tt.interrupted {
				t.Fatalf("done, interrupted = %v, %v, want %v, %v", d.done, d.interrupted, tt.done, tt.interrupted)
			}
			for i, want := range tt.wantListening {
				if got := d.socks[i].Listening(); got != want {
					t.Errorf("socket %d Listening() = %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestDiagRequest(t *testing.T) {
	b := diagRequest(77, afInet6, ipprotoUDP, 1<<tcpClose)
	ne := binary.NativeEndian
	if len(b) != 72 || ne.Uint32(b) != 72 {
		t.Fatalf("request length = %d (header says %d), want 72", len(b), ne.Uint32(b))
	}
	if typ, flags, seq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:]); typ != sockDiagByFamily || flags != nlmFRequest|nlmFDump || seq != 77 {
		t.Fatalf("header type %d flags %#x seq %d, want %d %#x 77", typ, flags, seq, sockDiagByFamily, nlmFRequest|nlmFDump)
	}
	r := b[nlmsgHdrLen:]
	if r[0] != afInet6 || r[1] != ipprotoUDP || ne.Uint32(r[4:]) != 1<<tcpClose {
		t.Fatalf("inet_diag_req_v2 = % x", r[:8])
	}
	for i, c := range r[8:] {
		if c != 0 {
			t.Fatalf("socket id byte %d = %d, want 0 (dump everything)", i, c)
		}
	}
}

func TestListening(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		s    Socket
		want bool
	}{
		{Socket{Proto: TCP, State: tcpListen, Local: ap("0.0.0.0:80")}, true},
		{Socket{Proto: TCP, State: tcpEstab, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:5000")}, false},
		{Socket{Proto: TCP, State: tcpClose, Local: ap("127.0.0.1:80")}, false},
		{Socket{Proto: UDP, State: tcpClose, Local: ap("[::]:53"), Remote: ap("[::]:0")}, true},
		{Socket{Proto: UDP, State: tcpClose, Local: ap("[::]:0"), Remote: ap("[::]:0")}, false},
		{Socket{Proto: UDP, State: tcpEstab, Local: ap("127.0.0.1:4000"), Remote: ap("127.0.0.1:53")}, false},
		{Socket{Proto: "sctp", State: tcpListen, Local: ap("127.0.0.1:80")}, false},
	}
	for _, tt := range tests {
		if got := tt.s.Listening(); got != tt.want {
			t.Errorf("%+v.Listening() = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestParseSocketLink(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[0]", 0, true},
		{"socket:[18446744073709551615]", 1<<64 - 1, true},
		{"socket:[]", 0, false},
		{"socket:[12a]", 0, false},
		{"socket:[-1]", 0, false},
		{"socket:[12", 0, false},
		{"pipe:[12345]", 0, false},
		{"/dev/null", 0, false},
		{"anon_inode:[eventpoll]", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseSocketLink(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseSocketLink(%q) = %d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

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
func FuzzDiagParse(f *testing.F) {
	f.Add(cat(diagMsg(1, 0, sock{state: tcpListen, local: "127.0.0.1:8080", peer: "0.0.0.0:0", inode: 1}), done(1)))
	f.Add(cat(diagMsg(1, nlmFDumpIntr, sock{state: tcpClose, local: "[fe80::1]:53", peer: "[::]:0", ifindex: 2}), done(1)))
	f.Add(cat(diagMsg(1, 0, sock{state: tcpListen, local: "[::]:22", peer: "[::]:0", attrs: []byte{5, 0, 1, 0, 9}}), done(1)))
	f.Add(errMsg(1, -13))
	f.Add(nlmsg(nlmsgNoop, 0, 1, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := &diagDump{seq: 1, proto: TCP}
		err := d.parse(b)
		if len(d.socks) > len(b)/(nlmsgHdrLen+diagMsgLen) {
			t.Fatalf("%d sockets out of %d bytes", len(d.socks), len(b))
		}
		for _, s := range d.socks {
			if !s.Local.Addr().IsValid() || !s.Remote.Addr().IsValid() || s.Proto != TCP {
				t.Fatalf("bad socket %+v", s)
			}
			if s.Local.Addr().Is4In6() {
				t.Fatalf("mapped address left in %+v", s)
			}
		}
		if err == nil && d.done {
			// Parsing more after done reads nothing.
			n := len(d.socks)
			if err := d.parse(b); err != nil || len(d.socks) != n {
				t.Fatalf("parse after done: %v, %d sockets (had %d)", err, len(d.socks), n)
			}
		}
	})
}
