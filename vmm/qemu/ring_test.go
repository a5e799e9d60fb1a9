package qemu

import (
	"bytes"
	"testing"
)

func TestRingKeepsTheLastBytes(t *testing.T) {
	r := newRing(8)
	_, changed := r.snapshot()
	r.Write([]byte("abc"))
	select {
	case <-changed:
	default:
		t.Fatal("Write did not wake waiters")
	}
	r.Write([]byte("defgh"))
	if got := r.Bytes(); string(got) != "abcdefgh" {
		t.Fatalf("got %q", got)
	}
	r.Write([]byte("ij"))
	if got := r.Bytes(); string(got) != "cdefghij" {
		t.Fatalf("got %q", got)
	}
	r.Write(bytes.Repeat([]byte("z"), 20))
	if got := r.Bytes(); string(got) != "zzzzzzzz" {
		t.Fatalf("got %q", got)
	}
}
