//go:build !cgo

package store

// isPrimaryKeyViolation is never true without cgo: go-sqlite3 is then a stub
// whose Open fails, so no statement ever runs. This file exists so that the
// package compiles for the compile-only checks (GOOS=windows CGO_ENABLED=0).
func isPrimaryKeyViolation(error) bool { return false }
