package agent

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestVsock: a dial of a port nobody serves fails within its context, on
// any kernel — with no vsock transport (CI's hosts among many) it would
// otherwise hang in connect. With SUBSYS_TEST_VSOCK=1, on a kernel with the
// loopback transport (CID 1, vsock_loopback), it also serves the protocol on
// AF_VSOCK and says hello over DialVsock; no kernel here has that transport,
// so that half runs only when asked for.
func TestVsock(t *testing.T) {
	const port = VsockPort + 1000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := DialVsock(dctx, unix.VMADDR_CID_LOCAL, port+1)
	dcancel()
	if err == nil {
		t.Fatal("dial of a vsock port nobody serves succeeded")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("dial of a vsock port nobody serves took %v, past its 2 s context", d)
	}
	if os.Getenv("SUBSYS_TEST_VSOCK") != "1" {
		t.Log("the hello over vsock needs a loopback transport: SUBSYS_TEST_VSOCK=1 runs it")
		return
	}
	ln, err := listenVsock(port)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served; srv.Close() }()

	dctx, dcancel = context.WithTimeout(ctx, 10*time.Second)
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
