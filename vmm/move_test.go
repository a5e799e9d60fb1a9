package vmm

import "testing"

// TestMoveIsWithin: a path is within a directory when it is the directory or
// below it, never because its name merely begins the same.
func TestMoveIsWithin(t *testing.T) {
	for _, tc := range []struct {
		p, dir string
		want   bool
	}{
		{"/srv/a", "/srv/a", true},
		{"/srv/a/b", "/srv/a", true},
		{"/srv/ab", "/srv/a", false},
		{"/srv", "/srv/a", false},
		{"/srv/a", "/", true},
	} {
		if got := isWithin(tc.p, tc.dir); got != tc.want {
			t.Errorf("isWithin(%q, %q) = %v, want %v", tc.p, tc.dir, got, tc.want)
		}
	}
}
