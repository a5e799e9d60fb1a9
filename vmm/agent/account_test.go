package agent

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice,,,:/home/alice:/bin/sh
broken:x:notanumber:1::/:/bin/sh
short:x:5
+nis::::::
bob:x:1001:1001::: 
nohome:x:1002:1002:::
`

const testGroup = `root:x:0:
users:x:100:alice,bob
wheel:x:10: alice
alice:x:1000:
audio:x:29:bob
dup:x:1000:alice
`

func TestLookupAccount(t *testing.T) {
	tests := []struct {
		spec string
		want account
		err  error
	}{
		{"", account{Name: "root", UID: 0, GID: 0, Groups: []int{0}, Home: "/root", Shell: "/bin/bash"}, nil},
		{"root", account{Name: "root", UID: 0, GID: 0, Groups: []int{0}, Home: "/root", Shell: "/bin/bash"}, nil},
		{"alice", account{Name: "alice", UID: 1000, GID: 1000, Groups: []int{1000, 100, 10}, Home: "/home/alice", Shell: "/bin/sh"}, nil},
		{"1000", account{Name: "alice", UID: 1000, GID: 1000, Groups: []int{1000, 100, 10}, Home: "/home/alice", Shell: "/bin/sh"}, nil},
		{"bob", account{Name: "bob", UID: 1001, GID: 1001, Groups: []int{1001, 100, 29}, Home: "/", Shell: " "}, nil},
		{"nohome", account{Name: "nohome", UID: 1002, GID: 1002, Groups: []int{1002}, Home: "/", Shell: "/bin/sh"}, nil},
		{"4242", account{UID: 4242, GID: 4242, Groups: []int{4242}, Home: "/", Shell: "/bin/sh"}, nil},
		{"mallory", account{}, ErrUserNotFound},
		{"broken", account{}, ErrUserNotFound},
		{"nis", account{}, ErrUserNotFound},
		{"-1", account{}, ErrUserNotFound},
		{"4294967295", account{}, ErrUserNotFound},
	}
	for _, tt := range tests {
		got, err := lookupAccount([]byte(testPasswd), []byte(testGroup), tt.spec)
		if !errors.Is(err, tt.err) {
			t.Errorf("lookupAccount(%q) error = %v, want %v", tt.spec, err, tt.err)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("lookupAccount(%q) = %+v, want %+v", tt.spec, got, tt.want)
		}
	}
}

func TestLookupAccountNoFiles(t *testing.T) {
	got, err := lookupAccount(nil, nil, "")
	want := account{Name: "root", Groups: []int{0}, Home: "/root", Shell: "/bin/sh"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("lookupAccount(no files, root) = %+v, %v, want %+v", got, err, want)
	}
	if _, err := lookupAccount(nil, nil, "alice"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("lookupAccount(no files, alice) error = %v, want ErrUserNotFound", err)
	}
}

func TestBuildEnv(t *testing.T) {
	alice := account{Name: "alice", UID: 1000, Home: "/home/alice", Shell: "/bin/sh"}
	tests := []struct {
		name  string
		acct  account
		tty   bool
		extra []string
		want  []string
		err   bool
	}{
		{"defaults", alice, false, nil, []string{"PATH=" + defaultPath, "HOME=/home/alice", "USER=alice", "LOGNAME=alice", "SHELL=/bin/sh"}, false},
		{"tty", alice, true, nil, []string{"PATH=" + defaultPath, "HOME=/home/alice", "USER=alice", "LOGNAME=alice", "SHELL=/bin/sh", "TERM=xterm-256color"}, false},
		{"override and add", alice, true, []string{"TERM=dumb", "FOO=bar", "PATH=/bin", "FOO=baz", "EMPTY="},
			[]string{"PATH=/bin", "HOME=/home/alice", "USER=alice", "LOGNAME=alice", "SHELL=/bin/sh", "TERM=dumb", "FOO=baz", "EMPTY="}, false},
		{"uid only", account{UID: 7, Home: "/", Shell: "/bin/sh"}, false, nil, []string{"PATH=" + defaultPath, "HOME=/", "USER=7", "LOGNAME=7", "SHELL=/bin/sh"}, false},
		{"no equals", alice, false, []string{"FOO"}, nil, true},
		{"empty key", alice, false, []string{"=x"}, nil, true},
		{"nul", alice, false, []string{"A=b\x00c"}, nil, true},
	}
	for _, tt := range tests {
		got, err := buildEnv(tt.acct, tt.tty, tt.extra)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("%s: buildEnv = %q, %v, want %q (error %v)", tt.name, got, err, tt.want, tt.err)
		}
	}
}

func TestPatchHosts(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "127.0.0.1\tlocalhost\n127.0.1.1\tbox\n"},
		{"debian", "127.0.0.1\tlocalhost\n127.0.1.1\told\n\n::1 localhost ip6-localhost\n",
			"127.0.0.1\tlocalhost\n127.0.1.1\tbox\n\n::1 localhost ip6-localhost\n"},
		{"keeps others", "# hosts\n10.0.0.1 db\n127.0.0.1 localhost.localdomain localhost # lo\n",
			"# hosts\n10.0.0.1 db\n127.0.0.1 localhost.localdomain localhost # lo\n127.0.1.1\tbox\n"},
		{"no localhost", "10.0.0.1 db", "127.0.0.1\tlocalhost\n127.0.1.1\tbox\n10.0.0.1 db\n"},
		{"commented localhost does not count", "# 127.0.0.1 localhost\n",
			"127.0.0.1\tlocalhost\n127.0.1.1\tbox\n# 127.0.0.1 localhost\n"},
	}
	for _, tt := range tests {
		got := string(patchHosts([]byte(tt.in), "box"))
		if got != tt.want {
			t.Errorf("%s: patchHosts(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
		if again := string(patchHosts([]byte(got), "box")); again != got {
			t.Errorf("%s: patchHosts is not idempotent: %q then %q", tt.name, got, again)
		}
	}
}

func FuzzLookupAccount(f *testing.F) {
	f.Add(testPasswd, testGroup, "alice")
	f.Add("a:b:c:d:e:f:g\n", "::::\n", "1")
	f.Fuzz(func(t *testing.T, passwd, group, spec string) {
		a, err := lookupAccount([]byte(passwd), []byte(group), spec)
		if err != nil {
			return
		}
		if a.Home == "" || a.Shell == "" || len(a.Groups) == 0 || a.Groups[0] != a.GID {
			t.Fatalf("lookupAccount(%q) = %+v: missing defaults", spec, a)
		}
		if strings.ContainsAny(a.Name, ":\n") {
			t.Fatalf("name %q holds a separator", a.Name)
		}
	})
}
