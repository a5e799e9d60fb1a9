package cli

import (
	"crypto/tls"
	"net"
)

// tlsListener wraps ln in TLS with the given key pair, loaded on each handshake so
// a renewed certificate is picked up without a restart.
func tlsListener(ln net.Listener, certFile, keyFile string) net.Listener {
	return tls.NewListener(ln, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			return &c, err
		},
	})
}
