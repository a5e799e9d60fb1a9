package sockdiag

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
	cookie       uint64
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
	ne.PutUint32(id[40:], uint32(s.cookie))
	ne.PutUint32(id[44:], uint32(s.cookie>>32))
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
			name: "tcp v4 and v6", proto: tcp,
			in: cat(diagMsg(1, 0, listen4), diagMsg(1, 0, listen6), done(1)),
			want: []Socket{
				{Proto: tcp, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242},
				{Proto: tcp, State: tcpListen, Local: netip.MustParseAddrPort("[::]:443"), Remote: netip.MustParseAddrPort("[::]:0"), Inode: 7},
			},
			done: true, wantListening: []bool{true, true},
		},
		{
			name: "split across buffers", proto: tcp,
			in: cat(diagMsg(1, 0, listen4), diagMsg(1, 0, listen6), done(1)),
			want: []Socket{
				{Proto: tcp, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242},
				{Proto: tcp, State: tcpListen, Local: netip.MustParseAddrPort("[::]:443"), Remote: netip.MustParseAddrPort("[::]:0"), Inode: 7},
			},
			done: true, splitAt: len(diagMsg(1, 0, listen4)),
		},
		{
			name: "mapped address reported as IPv4", proto: tcp,
			in:   cat(diagMsg(1, 0, mapped), done(1)),
			want: []Socket{{Proto: tcp, State: tcpListen, Local: netip.MustParseAddrPort("10.0.0.1:22"), Remote: netip.MustParseAddrPort("[::]:0"), Inode: 8}},
			done: true,
		},
		{
			name: "udp unconnected and connected", proto: udp,
			in: cat(
				diagMsg(5, 0, linkLocal),
				diagMsg(5, 0, sock{state: tcpEstab, local: "127.0.0.1:40000", peer: "127.0.0.1:53", inode: 10}),
				done(5)),
			want: []Socket{
				{Proto: udp, State: tcpClose, Local: netip.MustParseAddrPort("[fe80::1]:5353"), Remote: netip.MustParseAddrPort("[::]:0"), IfIndex: 3, Inode: 9},
				{Proto: udp, State: tcpEstab, Local: netip.MustParseAddrPort("127.0.0.1:40000"), Remote: netip.MustParseAddrPort("127.0.0.1:53"), Inode: 10},
			},
			done: true, wantListening: []bool{true, false},
		},
		{
			name: "connections with cookies", proto: tcp,
			in: cat(
				diagMsg(1, 0, sock{state: tcpEstab, local: "10.0.0.1:22", peer: "10.0.0.2:50000", inode: 11, cookie: 0x1122334455667788}),
				diagMsg(1, 0, sock{state: tcpCloseWait, local: "[::ffff:10.0.0.1]:22", peer: "[::ffff:10.0.0.3]:50001", inode: 12, cookie: 3}),
				diagMsg(1, 0, sock{state: tcpSynRecv, local: "[fd00::1]:443", peer: "[fd00::2]:40000", cookie: 1 << 32}),
				done(1)),
			want: []Socket{
				{Proto: tcp, State: tcpEstab, Local: netip.MustParseAddrPort("10.0.0.1:22"), Remote: netip.MustParseAddrPort("10.0.0.2:50000"), Inode: 11, Cookie: 0x1122334455667788},
				{Proto: tcp, State: tcpCloseWait, Local: netip.MustParseAddrPort("10.0.0.1:22"), Remote: netip.MustParseAddrPort("10.0.0.3:50001"), Inode: 12, Cookie: 3},
				{Proto: tcp, State: tcpSynRecv, Local: netip.MustParseAddrPort("[fd00::1]:443"), Remote: netip.MustParseAddrPort("[fd00::2]:40000"), Cookie: 1 << 32},
			},
			done: true, wantListening: []bool{false, false, false},
		},
		{
			name: "other sequence skipped", proto: tcp,
			in:   cat(diagMsg(9, 0, listen6), diagMsg(1, 0, listen4), done(9), done(1)),
			want: []Socket{{Proto: tcp, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242}},
			done: true,
		},
		{
			name: "noop and ack skipped, nothing after done read", proto: tcp,
			in:   cat(nlmsg(nlmsgNoop, 0, 1, nil), errMsg(1, 0), done(1), diagMsg(1, 0, listen4)),
			done: true,
		},
		{
			name: "interrupted", proto: tcp,
			in:   cat(diagMsg(1, nlmFDumpIntr, listen4), done(1)),
			want: []Socket{{Proto: tcp, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242}},
			done: true, interrupted: true,
		},
		{
			name: "not done yet", proto: tcp,
			in:   diagMsg(1, 0, listen4),
			want: []Socket{{Proto: tcp, State: tcpListen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), UID: 1000, Inode: 4242}},
		},
		{name: "kernel error", proto: tcp, in: errMsg(1, -int32(syscall.EACCES)), wantErr: syscall.EACCES},
		{name: "done with error", proto: tcp, in: nlmsg(nlmsgDone, 0, 1, []byte{0xfe, 0xff, 0xff, 0xff}), wantAnyErr: true, done: true},
		{name: "short error", proto: tcp, in: nlmsg(nlmsgError, 0, 1, []byte{1}), wantAnyErr: true},
		{name: "overrun", proto: tcp, in: nlmsg(nlmsgOverrun, 0, 1, nil), wantAnyErr: true},
		{name: "unknown type", proto: tcp, in: nlmsg(99, 0, 1, nil), wantAnyErr: true},
		{name: "short header", proto: tcp, in: []byte{1, 2, 3}, wantAnyErr: true},
		{name: "length past buffer", proto: tcp, in: diagMsg(1, 0, listen4)[:40], wantAnyErr: true},
		{name: "length below header", proto: tcp, in: withLen(nlmsg(nlmsgNoop, 0, 1, nil), 8), wantAnyErr: true},
		{name: "short inet_diag_msg", proto: tcp, in: nlmsg(sockDiagByFamily, 0, 1, make([]byte, 40)), wantAnyErr: true},
		{name: "bad family", proto: tcp, in: nlmsg(sockDiagByFamily, 0, 1, make([]byte, diagMsgLen)), wantAnyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &diagDump{seq: 1, proto: tt.proto}
			if tt.proto == udp {
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

func TestDestroyRequest(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name       string
		s          Socket
		family     uint8
		proto      uint8
		src, dst   []byte // the 16-byte address fields
		cookie     [2]uint32
		wantErr    bool
		sport, dpt uint16
	}{
		{
			name: "IPv4", s: Socket{Proto: tcp, Local: ap("10.0.0.1:22"), Remote: ap("10.0.0.2:50000"), IfIndex: 3, Cookie: 0x0000000200000001},
			family: afInet, proto: ipprotoTCP, sport: 22, dpt: 50000,
			src:    []byte{10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			dst:    []byte{10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			cookie: [2]uint32{1, 2},
		},
		{
			name: "IPv6", s: Socket{Proto: tcp, Local: ap("[fd00::1]:443"), Remote: ap("[fd00::2]:40000"), Cookie: 7},
			family: afInet6, proto: ipprotoTCP, sport: 443, dpt: 40000,
			src:    netip.MustParseAddr("fd00::1").AsSlice(),
			dst:    netip.MustParseAddr("fd00::2").AsSlice(),
			cookie: [2]uint32{7, 0},
		},
		{
			name: "no cookie: any socket", s: Socket{Proto: udp, Local: ap("127.0.0.1:53"), Remote: ap("127.0.0.1:4000")},
			family: afInet, proto: ipprotoUDP, sport: 53, dpt: 4000,
			src:    []byte{127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			dst:    []byte{127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			cookie: [2]uint32{diagNoCookie, diagNoCookie},
		},
		{
			name: "IPv4 local, IPv6 wildcard peer: IPv4-mapped", s: Socket{Proto: udp, Local: ap("10.0.0.1:53"), Remote: ap("[::]:0"), Cookie: 9},
			family: afInet6, proto: ipprotoUDP, sport: 53,
			src:    netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(),
			dst:    make([]byte, 16),
			cookie: [2]uint32{9, 0},
		},
		{name: "bad protocol", s: Socket{Proto: "sctp", Local: ap("10.0.0.1:1"), Remote: ap("10.0.0.2:2")}, wantErr: true},
		{name: "no addresses", s: Socket{Proto: tcp}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := destroyRequest(99, tt.s)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("destroyRequest(%+v) = %v, want ErrInvalid", tt.s, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ne := binary.NativeEndian
			if len(b) != 72 || ne.Uint32(b) != 72 {
				t.Fatalf("request length = %d (header says %d), want 72", len(b), ne.Uint32(b))
			}
			if typ, flags, seq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:]); typ != sockDestroy || flags != nlmFRequest|nlmFAck || seq != 99 {
				t.Fatalf("header type %d flags %#x seq %d, want %d %#x 99", typ, flags, seq, sockDestroy, nlmFRequest|nlmFAck)
			}
			r := b[nlmsgHdrLen:]
			if r[0] != tt.family || r[1] != tt.proto {
				t.Fatalf("family, protocol = %d, %d, want %d, %d", r[0], r[1], tt.family, tt.proto)
			}
			id := r[8:]
			if sp, dp := binary.BigEndian.Uint16(id[0:]), binary.BigEndian.Uint16(id[2:]); sp != tt.sport || dp != tt.dpt {
				t.Fatalf("ports = %d, %d, want %d, %d", sp, dp, tt.sport, tt.dpt)
			}
			if !slices.Equal(id[4:20], tt.src) || !slices.Equal(id[20:36], tt.dst) {
				t.Fatalf("addresses = % x, % x, want % x, % x", id[4:20], id[20:36], tt.src, tt.dst)
			}
			if ifi := ne.Uint32(id[36:]); ifi != tt.s.IfIndex {
				t.Fatalf("ifindex = %d, want %d", ifi, tt.s.IfIndex)
			}
			if c := [2]uint32{ne.Uint32(id[40:]), ne.Uint32(id[44:])}; c != tt.cookie {
				t.Fatalf("cookie = %#x, want %#x", c, tt.cookie)
			}
		})
	}
}

// TestDestroyCookieRoundTrip: the cookie a dump reports is the cookie a
// destroy request sends.
func TestDestroyCookieRoundTrip(t *testing.T) {
	for _, c := range []uint64{1, 0xdeadbeef, 1 << 32, 0x1122334455667788, 1<<64 - 2} {
		d := &diagDump{seq: 1, proto: tcp}
		if err := d.parse(diagMsg(1, 0, sock{state: tcpEstab, local: "10.0.0.1:1", peer: "10.0.0.2:2", cookie: c})); err != nil || len(d.socks) != 1 {
			t.Fatalf("parse: %v, %d sockets", err, len(d.socks))
		}
		req, err := destroyRequest(1, d.socks[0])
		if err != nil {
			t.Fatal(err)
		}
		// inet_diag_req_v2 and inet_diag_msg place the socket id 8 and 4
		// bytes in.
		body := diagMsgBody(sock{state: tcpEstab, local: "10.0.0.1:1", peer: "10.0.0.2:2", cookie: c})
		if got, want := req[nlmsgHdrLen+8:nlmsgHdrLen+8+sockIDLen], body[4:4+sockIDLen]; !slices.Equal(got, want) {
			t.Fatalf("cookie %#x: request id % x, dump id % x", c, got, want)
		}
	}
}

func TestParseAck(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		found   bool
		errno   syscall.Errno
		wantErr bool
	}{
		{name: "empty"},
		{name: "success", in: errMsg(7, 0), found: true},
		{name: "gone", in: errMsg(7, -int32(syscall.ENOENT)), found: true, errno: syscall.ENOENT},
		{name: "not allowed", in: errMsg(7, -int32(syscall.EPERM)), found: true, errno: syscall.EPERM},
		{name: "other sequence skipped", in: errMsg(6, -int32(syscall.EPERM))},
		{name: "other sequence, then ours", in: cat(errMsg(6, -int32(syscall.EPERM)), nlmsg(nlmsgNoop, 0, 7, nil), errMsg(7, 0)), found: true},
		{name: "short error", in: nlmsg(nlmsgError, 0, 7, []byte{1}), wantErr: true},
		{name: "short header", in: []byte{1, 2, 3}, wantErr: true},
		{name: "length past buffer", in: errMsg(7, 0)[:20], wantErr: true},
		{name: "length below header", in: withLen(errMsg(7, 0), 4), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			found, errno, err := parseAck(tt.in, 7)
			if (err != nil) != tt.wantErr || found != tt.found || errno != tt.errno {
				t.Fatalf("parseAck = %v, %v, %v; want %v, %v, error %v", found, errno, err, tt.found, tt.errno, tt.wantErr)
			}
		})
	}
}

// FuzzParseAck: the acknowledgement parser never panics, and finds nothing
// in a buffer it calls malformed.
func FuzzParseAck(f *testing.F) {
	f.Add(errMsg(1, 0))
	f.Add(errMsg(1, -2))
	f.Add(cat(errMsg(2, -1), errMsg(1, 0)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		found, errno, err := parseAck(b, 1)
		if err != nil && (found || errno != 0) {
			t.Fatalf("parseAck = %v, %v, %v", found, errno, err)
		}
		if !found && errno != 0 {
			t.Fatalf("errno %v without an acknowledgement", errno)
		}
	})
}

func TestListening(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		s    Socket
		want bool
	}{
		{Socket{Proto: tcp, State: tcpListen, Local: ap("0.0.0.0:80")}, true},
		{Socket{Proto: tcp, State: tcpEstab, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:5000")}, false},
		{Socket{Proto: tcp, State: tcpClose, Local: ap("127.0.0.1:80")}, false},
		{Socket{Proto: udp, State: tcpClose, Local: ap("[::]:53"), Remote: ap("[::]:0")}, true},
		{Socket{Proto: udp, State: tcpClose, Local: ap("[::]:0"), Remote: ap("[::]:0")}, false},
		{Socket{Proto: udp, State: tcpEstab, Local: ap("127.0.0.1:4000"), Remote: ap("127.0.0.1:53")}, false},
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

func FuzzDiagParse(f *testing.F) {
	f.Add(cat(diagMsg(1, 0, sock{state: tcpListen, local: "127.0.0.1:8080", peer: "0.0.0.0:0", inode: 1}), done(1)))
	f.Add(cat(diagMsg(1, nlmFDumpIntr, sock{state: tcpClose, local: "[fe80::1]:53", peer: "[::]:0", ifindex: 2}), done(1)))
	f.Add(cat(diagMsg(1, 0, sock{state: tcpListen, local: "[::]:22", peer: "[::]:0", attrs: []byte{5, 0, 1, 0, 9}}), done(1)))
	f.Add(cat(diagMsg(1, 0, sock{state: tcpEstab, local: "[::ffff:10.0.0.1]:22", peer: "[::ffff:10.0.0.2]:5000", cookie: 0x1122334455667788}), done(1)))
	f.Add(errMsg(1, -13))
	f.Add(nlmsg(nlmsgNoop, 0, 1, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := &diagDump{seq: 1, proto: tcp}
		err := d.parse(b)
		if len(d.socks) > len(b)/(nlmsgHdrLen+diagMsgLen) {
			t.Fatalf("%d sockets out of %d bytes", len(d.socks), len(b))
		}
		for _, s := range d.socks {
			if !s.Local.Addr().IsValid() || !s.Remote.Addr().IsValid() || s.Proto != tcp {
				t.Fatalf("bad socket %+v", s)
			}
			if s.Local.Addr().Is4In6() {
				t.Fatalf("mapped address left in %+v", s)
			}
			// What a dump reports, a destroy request can name.
			if req, err := destroyRequest(1, s); err != nil || len(req) != nlmsgHdrLen+diagReqLen {
				t.Fatalf("destroyRequest(%+v) = %d bytes, %v", s, len(req), err)
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
