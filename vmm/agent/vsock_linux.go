package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// DialVsock connects to the agent of the VM with context id cid on the
// AF_VSOCK port (VsockPort), from a Linux host with vhost-vsock. ctx bounds
// the connection; the kernel's own connect timeout (2 s) bounds a dial to a
// VM that does not answer.
func DialVsock(ctx context.Context, cid, port uint32) (*Client, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := vsock.Dial(cid, port, nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{conn: c}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		// The dial ends by itself (the connect timeout); what it made is
		// closed then.
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("dial agent on vsock %d:%d: %w", cid, port, ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("dial agent on vsock %d:%d: %w", cid, port, r.err)
	}
	c, err := NewClient(r.conn)
	if err != nil {
		r.conn.Close()
		return nil, err
	}
	return c, nil
}

// listenVsock listens on AF_VSOCK port for any host. A VM without a vsock
// device (no transport registered: EAFNOSUPPORT, ENODEV) gets an error
// wrapping errors.ErrUnsupported.
func listenVsock(port uint32) (net.Listener, error) {
	ln, err := vsock.ListenContextID(unix.VMADDR_CID_ANY, port, nil)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil, fmt.Errorf("vsock port %d: %w: %v", port, errors.ErrUnsupported, err)
		}
		return nil, fmt.Errorf("vsock port %d: %w", port, err)
	}
	return ln, nil
}

// serveVsock serves srv on AF_VSOCK VsockPort until ctx ends, when the VM
// has a vsock device; without one it logs that and returns at once.
func serveVsock(ctx context.Context, srv *Server, log *slog.Logger) {
	ln, err := listenVsock(VsockPort)
	if err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			log.Info("subsys-agent: no vsock device; serving on virtio-serial only", "err", err)
		} else {
			log.Warn("subsys-agent: vsock", "err", err)
		}
		return
	}
	log.Info(fmt.Sprintf("subsys-agent: serving on vsock port %d", VsockPort))
	if err := srv.Serve(ctx, ln); err != nil {
		log.Warn("subsys-agent: vsock", "err", err)
	}
}
