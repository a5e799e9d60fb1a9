package disk

import (
	"strings"
	"testing"
)

func TestFormatArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		want []string
	}{
		// The ratio gives 4 Mi inodes, far above what a tree needs.
		{"default size", DefaultMaxSize, []string{"-i 65536", "-J size=128"}},
		// The ratio gives 16 Ki: raised for a distro of guestTreeInodes.
		{"1 GiB", 1 << 30, []string{"-N 66384"}},
		// No more than a disk's blocks can hold: 16 Ki blocks.
		{"minimum size", MinMaxSize, []string{"-N 16384", "-J size=8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := FormatArgs("/dev/sdb", tc.size, Options{})
			line := " " + strings.Join(args, " ") + " "
			for _, w := range append(tc.want, "-m 0", "-e remount-ro", "-b 4096") {
				if !strings.Contains(line, " "+w+" ") {
					t.Errorf("%q lacks %q", line, w)
				}
			}
			if strings.Contains(line, " -d ") || !strings.HasSuffix(line, " /dev/sdb ") {
				t.Errorf("%q: want no tree and the device last", line)
			}
		})
	}
}
