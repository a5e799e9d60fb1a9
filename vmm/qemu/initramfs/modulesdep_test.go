package initramfs

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseModulesDep(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     map[string]Dep
		err      string // a substring of the error; "" for none
	}{
		{name: "empty", in: "", want: map[string]Dep{}},
		{
			name: "debian ext4 chain",
			in: "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz kernel/lib/crc16.ko.xz\n" +
				"kernel/fs/jbd2/jbd2.ko.xz:\n" +
				"kernel/fs/mbcache.ko.xz:\n" +
				"kernel/lib/crc16.ko.xz:\n",
			want: map[string]Dep{
				"ext4":    {Path: "kernel/fs/ext4/ext4.ko.xz", Deps: []string{"kernel/fs/jbd2/jbd2.ko.xz", "kernel/fs/mbcache.ko.xz", "kernel/lib/crc16.ko.xz"}},
				"jbd2":    {Path: "kernel/fs/jbd2/jbd2.ko.xz"},
				"mbcache": {Path: "kernel/fs/mbcache.ko.xz"},
				"crc16":   {Path: "kernel/lib/crc16.ko.xz"},
			},
		},
		{
			name: "dashes, zstd, plain, comments, blank lines and extra spaces",
			in:   "# made by hand\n\n  kernel/crypto/crc32c-generic.ko.zst :  \n" + "updates/a.ko:\tkernel/crypto/crc32c-generic.ko.zst  \r\n",
			want: map[string]Dep{
				"crc32c_generic": {Path: "kernel/crypto/crc32c-generic.ko.zst"},
				"a":              {Path: "updates/a.ko", Deps: []string{"kernel/crypto/crc32c-generic.ko.zst"}},
			},
		},
		{name: "no colon", in: "kernel/a.ko kernel/b.ko\n", err: "no ':'"},
		{name: "absolute path", in: "/etc/shadow.ko:\n", err: "not a clean relative path"},
		{name: "escapes the tree", in: "../../etc/x.ko:\n", err: "not a clean relative path"},
		{name: "escaping dependency", in: "kernel/a.ko: kernel/../../b.ko\n", err: "not a clean relative path"},
		{name: "unclean path", in: "kernel//a.ko:\n", err: "not a clean relative path"},
		{name: "not a module", in: "kernel/a.o:\n", err: "does not end in"},
		{name: "bare suffix", in: "kernel/.ko:\n", err: "does not end in"},
		{name: "listed twice", in: "kernel/a.ko:\nother/a.ko.xz:\n", err: "listed twice"},
		{name: "line too long", in: "kernel/a.ko: " + strings.Repeat("x", maxDepLine) + "\n", err: "too long"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseModulesDep(strings.NewReader(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %#v\nwant %#v", got, c.want)
			}
		})
	}
}

// FuzzParseModulesDep feeds the parser what a damaged or hostile kernel
// package could hold: it must not panic, and whatever it accepts must only
// name clean module paths inside the tree, keyed by their own names.
func FuzzParseModulesDep(f *testing.F) {
	f.Add("kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/lib/crc16.ko.xz\nkernel/fs/jbd2/jbd2.ko.xz:\n")
	f.Add("# c\n\na-b.ko.zst:\n")
	f.Add("../x.ko:\n")
	f.Add("x.ko: /y.ko\n")
	f.Add(":\n")
	f.Fuzz(func(t *testing.T, in string) {
		table, err := ParseModulesDep(strings.NewReader(in))
		if err != nil {
			return
		}
		for name, d := range table {
			for _, p := range append([]string{d.Path}, d.Deps...) {
				if _, err := checkModulePath(p); err != nil {
					t.Fatalf("accepted %q: %v", p, err)
				}
			}
			if n, _ := ModuleName(d.Path); n != name {
				t.Fatalf("%s is keyed as %s", d.Path, name)
			}
		}
	})
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/crypto/crc32c-generic.ko.xz": "crc32c_generic",
		"9pnet_virtio.ko.zst":                "9pnet_virtio",
		"fuse.ko":                            "fuse",
		"a/b.ko.gz":                          "b",
		"a/b.o":                              "",
		".ko":                                "",
	} {
		if got, _ := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}
