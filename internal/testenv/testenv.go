// Package testenv lets a test say what it needs of the machine it runs on —
// root, a program, a file, a kernel feature — and step aside where the machine
// lacks it. With SUBSYS_TEST_STRICT=1 in the environment (CI sets it, in
// .ci/run) every such need that is not met fails the test instead, so a CI
// machine that lacks something says so rather than passing with tests
// skipped.
//
// Route every skip through SkipOrFail (or the Require helpers), and a skip of
// a slow test under -short through SkipIfShort: under Strict nothing is
// skipped, so CI cannot pass with a test left out. Only tests import this
// package.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// StrictVar is the environment variable that makes an unmet need a failure.
const StrictVar = "SUBSYS_TEST_STRICT"

// Strict reports whether unmet needs fail tests: StrictVar holds a true value
// ("1", "true", …, as strconv.ParseBool reads it). A value that is not a
// boolean counts as true, so a typo does not quietly turn skips back on.
func Strict() bool {
	v, ok := os.LookupEnv(StrictVar)
	if !ok || v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}

// SkipOrFail stops the test because the machine lacks what it needs, which
// args say as t.Skip's would: a skip, or under Strict a failure (t.Fatal).
func SkipOrFail(tb testing.TB, args ...any) {
	tb.Helper()
	why := fmt.Sprintln(args...)
	why = why[:len(why)-1]
	if Strict() {
		tb.Fatalf("%s=1 makes this skip a failure: %s", StrictVar, why)
		return
	}
	tb.Skipf("%s (with %s=1 this fails)", why, StrictVar)
}

// SkipOrFailf is SkipOrFail with a format, as t.Skipf.
func SkipOrFailf(tb testing.TB, format string, args ...any) {
	tb.Helper()
	SkipOrFail(tb, fmt.Sprintf(format, args...))
}

// SkipPart reports that the test leaves out some of its checks because the
// machine lacks what they need, and lets the test go on with the rest: a log
// line, or under Strict a failure (t.Error) at the end of the test.
func SkipPart(tb testing.TB, args ...any) {
	tb.Helper()
	why := fmt.Sprintln(args...)
	why = why[:len(why)-1]
	if Strict() {
		tb.Errorf("%s=1 makes this left-out part a failure: %s", StrictVar, why)
		return
	}
	tb.Logf("left out: %s (with %s=1 this fails)", why, StrictVar)
}

// SkipIfShort skips a slow test when the run is -short (testing.Short), and
// says why; under Strict, -short is no reason to leave a test out, so the
// test runs as if -short were not given.
func SkipIfShort(tb testing.TB, why string) {
	tb.Helper()
	if !testing.Short() {
		return
	}
	if Strict() {
		tb.Logf("-short, but %s=1 runs it anyway: %s", StrictVar, why)
		return
	}
	tb.Skipf("%s (-short)", why)
}

// RequireRoot stops the test unless it runs as root (effective uid 0); why
// says what the test needs root for.
func RequireRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(tb, "needs root:", why)
	}
}

// RequireCommand returns the path of the program name from $PATH, or stops
// the test when there is none; hint says where to get it ("make deps").
func RequireCommand(tb testing.TB, name, hint string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFailf(tb, "needs %s (%s): %v", name, hint, err)
	}
	return p
}
