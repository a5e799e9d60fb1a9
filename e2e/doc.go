// Package e2e holds the end-to-end tests of the built subsys program (see
// harness_test.go). They drive a Linux server (namespaces, QEMU, nftables),
// so every test file is built on Linux only; this file keeps the package
// non-empty elsewhere, so that the Windows compile checks
// (`make check-windows`) can build it too.
package e2e
