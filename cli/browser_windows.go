package cli

import (
	"io/fs"
	"os/exec"
)

// detach: a Windows child outlives its console's Ctrl-C as it is.
func detach(*exec.Cmd) {}

// ownedPrivate: the user's profile directories are private by their ACLs.
func ownedPrivate(fs.FileInfo) bool { return true }
