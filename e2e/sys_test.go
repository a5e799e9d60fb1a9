//go:build linux

package e2e

import (
	"syscall"
	"testing"
)

type syscallStat = syscall.Stat_t

func linkCount(t testing.TB, path string, st *syscallStat) uint64 {
	t.Helper()
	if err := syscall.Stat(path, st); err != nil {
		t.Fatal(err)
	}
	return st.Nlink
}
