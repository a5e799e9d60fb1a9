package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// recorder is a testing.TB that records what a helper asked of it instead of
// stopping the test.
type recorder struct {
	testing.TB
	skipped, fatal, failed bool
	msg                    string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recorder) Logf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestStrict(t *testing.T) {
	for _, c := range []struct {
		val  string
		set  bool
		want bool
	}{
		{"", false, false},
		{"", true, false},
		{"0", true, false},
		{"false", true, false},
		{"1", true, true},
		{"true", true, true},
		{"yes please", true, true},
	} {
		if c.set {
			t.Setenv(StrictVar, c.val)
		} else {
			t.Setenv(StrictVar, "")
			os.Unsetenv(StrictVar)
		}
		if got := Strict(); got != c.want {
			t.Errorf("Strict() with %s=%q (set %v) = %v, want %v", StrictVar, c.val, c.set, got, c.want)
		}
	}
}

func TestSkipOrFail(t *testing.T) {
	for _, strict := range []string{"0", "1"} {
		t.Setenv(StrictVar, strict)
		r := &recorder{TB: t}
		SkipOrFail(r, "needs a", "thing:", 42)
		if r.skipped == (strict == "1") || r.fatal != (strict == "1") || r.failed {
			t.Errorf("%s=%s: SkipOrFail skipped %v, fatal %v, failed %v", StrictVar, strict, r.skipped, r.fatal, r.failed)
		}
		if !strings.Contains(r.msg, "needs a thing: 42") || !strings.Contains(r.msg, StrictVar) {
			t.Errorf("%s=%s: SkipOrFail message %q, want the reason and %s", StrictVar, strict, r.msg, StrictVar)
		}

		r = &recorder{TB: t}
		SkipOrFailf(r, "no %s at %d", "x", 7)
		if !strings.Contains(r.msg, "no x at 7") || r.fatal != (strict == "1") {
			t.Errorf("%s=%s: SkipOrFailf fatal %v, message %q", StrictVar, strict, r.fatal, r.msg)
		}

		r = &recorder{TB: t}
		SkipPart(r, "no cgroup v2")
		if r.skipped || r.fatal || r.failed != (strict == "1") || !strings.Contains(r.msg, "no cgroup v2") {
			t.Errorf("%s=%s: SkipPart skipped %v, fatal %v, failed %v, message %q", StrictVar, strict, r.skipped, r.fatal, r.failed, r.msg)
		}
	}
}

func TestRequireCommand(t *testing.T) {
	t.Setenv(StrictVar, "1")
	r := &recorder{TB: t}
	if p := RequireCommand(r, "sh", "a shell"); p == "" || r.fatal {
		t.Errorf("RequireCommand(sh) = %q, fatal %v (%s)", p, r.fatal, r.msg)
	}
	r = &recorder{TB: t}
	RequireCommand(r, "no-such-program-subsys-test", "nowhere")
	if !r.fatal || !strings.Contains(r.msg, "no-such-program-subsys-test (nowhere)") {
		t.Errorf("RequireCommand of a missing program: fatal %v, message %q", r.fatal, r.msg)
	}
}

// TestOutcome runs itself again in a child test process, as `go test` would,
// and checks what the real testing package made of SkipOrFail there. In the
// child (TESTENV_CHILD=1) it is the test under examination; in the parent,
// the examiner — so no test here is ever skipped.
func TestOutcome(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		SkipOrFail(t, "this machine lacks a thing")
		t.Log("after SkipOrFail")
		return
	}
	for _, c := range []struct {
		strict string
		want   string
	}{{"", "--- SKIP: TestOutcome"}, {"1", "--- FAIL: TestOutcome"}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOutcome$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", StrictVar+"="+c.strict)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), c.want) || strings.Contains(string(out), "after SkipOrFail") {
			t.Errorf("%s=%q: child test said\n%s\nwant %q, and nothing run after SkipOrFail", StrictVar, c.strict, out, c.want)
		}
	}
}

// TestSkipIfShortOutcome runs itself in a child `go test -short`: a plain run
// skips the slow test, a strict one runs it (so CI never leaves it out).
func TestSkipIfShortOutcome(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "short" {
		SkipIfShort(t, "a slow test")
		t.Log("ran the slow test")
		return
	}
	for _, c := range []struct {
		strict string
		want   string
		ran    bool
	}{{"", "--- SKIP: TestSkipIfShortOutcome", false}, {"1", "--- PASS: TestSkipIfShortOutcome", true}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipIfShortOutcome$", "-test.v", "-test.short")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=short", StrictVar+"="+c.strict)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), c.want) || strings.Contains(string(out), "ran the slow test") != c.ran {
			t.Errorf("%s=%q: child test said\n%s\nwant %q, slow test run: %v", StrictVar, c.strict, out, c.want, c.ran)
		}
	}
}
