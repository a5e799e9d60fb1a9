package vmm

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestDiskSize(t *testing.T) {
	tests := []struct {
		name    string
		version int
		size    int64
		raw     bool
		want    int64
		wantErr error
	}{
		{"version 1, none", 1, 0, false, 0, nil},
		{"version 1 with a size", 1, 1 << 30, false, 0, ErrInvalid},
		{"version 2 default", 2, 0, false, DefaultDiskSize, nil},
		{"raw image default", 2, 0, true, MaxDiskSize, nil},
		{"minimum", 2, MinDiskSize, false, MinDiskSize, nil},
		{"maximum", 2, MaxDiskSize, false, MaxDiskSize, nil},
		{"rounded down to a block", 2, 1<<30 + 100, false, 1 << 30, nil},
		{"below the minimum", 2, MinDiskSize - 1, false, 0, ErrInvalid},
		{"one byte", 2, 1, false, 0, ErrInvalid},
		{"above the maximum", 2, MaxDiskSize + 1, false, 0, ErrInvalid},
		{"negative", 2, -1, false, 0, ErrInvalid},
		{"raw image bounded", 2, 2 << 30, true, 2 << 30, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := diskSize(tc.version, tc.size, tc.raw)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) || got != tc.want {
				t.Errorf("diskSize(%d, %d, %v) = %d, %v; want %d, %v", tc.version, tc.size, tc.raw, got, err, tc.want, tc.wantErr)
			}
			if err != nil && err.Error() == ErrInvalid.Error() {
				t.Errorf("error %q says nothing of what is wrong", err)
			}
		})
	}
}

func TestSettingsReserve(t *testing.T) {
	tests := []struct {
		bytes   int64
		percent int
		size    int64
		want    int64
	}{
		{1 << 30, 5, 100 << 30, 1 << 30}, // 5 GiB > 1 GiB
		{1 << 30, 5, 8 << 30, 8 << 30 / 100 * 5},
		{0, 5, 8 << 30, 0},
		{1 << 30, 0, 8 << 30, 0},
	}
	for _, tc := range tests {
		s := Settings{ImportReserveBytes: tc.bytes, ImportReservePercent: tc.percent}
		if got := s.reserve(tc.size); got != tc.want {
			t.Errorf("Settings{%d, %d%%}.reserve(%d) = %d, want %d", tc.bytes, tc.percent, tc.size, got, tc.want)
		}
	}
}

func TestMadeFiles(t *testing.T) {
	for name, want := range map[string]bool{
		"rootfs": true, "disk.img": true, ".subsys-staging": true, ".disk.img.tmp-123": true, ".mke2fs-9.conf": true,
		"notes.txt": false, "disk.img.bak": false, "rootfs2": false,
	} {
		got := false
		for _, pat := range madeFiles {
			if ok, _ := filepath.Match(pat, name); ok {
				got = true
			}
		}
		if got != want {
			t.Errorf("%q made by subsys = %v, want %v", name, got, want)
		}
	}
}
