package agent

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestVsockLoopback serves the protocol on AF_VSOCK and reaches it with
// DialVsock over the kernel's loopback transport (CID 1, vsock_loopback).
// Many kernels (CI's container hosts among them) have no vsock transport
// at all, and a skip would fail SUBSYS_TEST_STRICT=1, so the test runs only
// when SUBSYS_TEST_VSOCK=1 asks for it.
func TestVsockLoopback(t *testing.T) {
	if os.Getenv("SUBSYS_TEST_VSOCK") != "1" {
		t.Skip("set SUBSYS_TEST_VSOCK=1 on a kernel with vsock_loopback")
	}
	const port = VsockPort + 1000
	ln, err := listenVsock(port)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served; srv.Close() }()

	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	c, err := DialVsock(dctx, unix.VMADDR_CID_LOCAL, port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Hello(dctx)
	if err != nil || info.Protocol != ProtocolVersion {
		t.Fatalf("hello over vsock: %+v, %v", info, err)
	}
	// Nothing listens on the next port: the dial fails, it does not hang.
	if _, err := DialVsock(dctx, unix.VMADDR_CID_LOCAL, port+1); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial of a port nobody serves: %v, want a refusal", err)
	}
}
