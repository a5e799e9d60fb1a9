package hcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got, indented canonically, with testdata/name byte for
// byte (rewriting it with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, got, "", "  "); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", name, err, got)
	}
	buf.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./vmm/hcs -update to write it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from the golden file:\n got: %s\nwant: %s", name, buf.Bytes(), want)
	}
}

var testSpec = VMSpec{
	Kernel:       `C:\Users\admin\AppData\Local\subsys\kernel\bzImage`,
	Initrd:       `C:\Users\admin\AppData\Local\subsys\vm\initrd.img`,
	Cmdline:      "systemd.unified_cgroup_hierarchy=1",
	MemoryMiB:    4096,
	CPUs:         4,
	ConsolePipe:  `\\.\pipe\subsys-0123abcd-console`,
	AgentService: "0000138d-facb-11e6-bd58-64006a7986d3",
}

func TestGoldenDocuments(t *testing.T) {
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		doc  []byte
	}{
		{"create.json", must(CreateDocument(testSpec))},
		{"attach-disk-0.json", must(AttachDiskRequest(0, `D:\distros\debian\ext4.vhdx`, false))},
		{"attach-disk-7-readonly.json", must(AttachDiskRequest(7, `D:\distros\alpine\ext4.vhdx`, true))},
		{"detach-disk-7.json", must(DetachDiskRequest(7))},
		{"memory-update.json", must(MemoryRequest(6144))},
		{"list-query.json", listQuery()},
		{"stats-query.json", statsQuery()},
	} {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, tc.doc) })
	}
}

// TestCreateDocumentCmdline: the extra command line follows the base one,
// and an empty one adds nothing (no trailing space).
func TestCreateDocumentCmdline(t *testing.T) {
	for _, tc := range []struct{ extra, want string }{
		{"", baseCmdline},
		{"  ", baseCmdline},
		{"loglevel=7", baseCmdline + " loglevel=7"},
	} {
		s := testSpec
		s.Cmdline = tc.extra
		b, err := CreateDocument(s)
		if err != nil {
			t.Fatal(err)
		}
		var doc computeSystem
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		if got := doc.VirtualMachine.Chipset.LinuxKernelDirect.KernelCmdLine; got != tc.want {
			t.Errorf("cmdline %q: got %q, want %q", tc.extra, got, tc.want)
		}
	}
}

// TestMemoryIsEven: HCS takes memory sizes in multiples of 2 MiB.
func TestMemoryIsEven(t *testing.T) {
	s := testSpec
	s.MemoryMiB = 1025
	b, err := CreateDocument(s)
	if err != nil {
		t.Fatal(err)
	}
	var doc computeSystem
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if got := doc.VirtualMachine.ComputeTopology.Memory.SizeInMB; got != 1026 {
		t.Errorf("1025 MiB became %d", got)
	}
	b, err = MemoryRequest(2047)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"Settings":2048`)) {
		t.Errorf("memory request for 2047 MiB: %s", b)
	}
}

func TestDocumentsRefuseBadInput(t *testing.T) {
	bad := func(f func(*VMSpec)) VMSpec { s := testSpec; f(&s); return s }
	for name, s := range map[string]VMSpec{
		"no kernel":        bad(func(s *VMSpec) { s.Kernel = "" }),
		"tiny memory":      bad(func(s *VMSpec) { s.MemoryMiB = 64 }),
		"no processors":    bad(func(s *VMSpec) { s.CPUs = 0 }),
		"no agent service": bad(func(s *VMSpec) { s.AgentService = "" }),
		"remote pipe":      bad(func(s *VMSpec) { s.ConsolePipe = `\\evil\pipe\x` }),
	} {
		if _, err := CreateDocument(s); !errors.Is(err, ErrSpec) {
			t.Errorf("%s: got %v, want ErrSpec", name, err)
		}
	}
	for _, target := range []int{-1, MaxDiskTarget + 1} {
		if _, err := AttachDiskRequest(target, `D:\x.vhdx`, false); !errors.Is(err, ErrSpec) {
			t.Errorf("attach at %d: got %v, want ErrSpec", target, err)
		}
		if _, err := DetachDiskRequest(target); !errors.Is(err, ErrSpec) {
			t.Errorf("detach at %d: got %v, want ErrSpec", target, err)
		}
	}
	if _, err := AttachDiskRequest(1, "", false); !errors.Is(err, ErrSpec) {
		t.Errorf("attach without a path: got %v", err)
	}
	if _, err := MemoryRequest(100); !errors.Is(err, ErrSpec) {
		t.Errorf("memory 100 MiB: got %v", err)
	}
}

func TestParseProperties(t *testing.T) {
	p, err := parseProperties([]byte(`{"Id":"subsys-1","State":"Running","RuntimeId":"b2f3c4d5-0000-4000-8000-000000000001",
		"Statistics":{"Uptime100ns":50000000,"Memory":{"MemoryUsageCommitBytes":1000,"MemoryUsagePrivateWorkingSetBytes":900}},"Other":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.State != "Running" || p.RuntimeID != "b2f3c4d5-0000-4000-8000-000000000001" || p.Statistics == nil ||
		p.Statistics.Memory == nil || p.Statistics.Memory.MemoryUsagePrivateWorkingSetBytes != 900 {
		t.Errorf("got %+v", p)
	}
	if _, err := parseProperties([]byte(`{"State":`)); err == nil {
		t.Error("truncated properties parsed")
	}
}

func FuzzParseProperties(f *testing.F) {
	f.Add([]byte(`{"Id":"x","State":"Running","RuntimeId":"y","Statistics":{"Memory":{}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseProperties(b) // must not panic
	})
}
