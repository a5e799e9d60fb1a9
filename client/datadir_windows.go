package client

import (
	"os"
	"path/filepath"
)

// systemServer is false on Windows: there is no system-wide server whose
// socket a user falls back to, and no directory like /var/lib that only an
// administrator could create (\var\lib\subsys could be any user's).
const systemServer = false

// platformDataDir is %LOCALAPPDATA%\subsys, the user's own local (not
// roaming) application data, where WSL keeps its distros too.
func platformDataDir() (string, bool) {
	dir := os.Getenv("LOCALAPPDATA")
	if dir == "" {
		var err error
		if dir, err = os.UserCacheDir(); err != nil { // %LocalAppData% as well
			return "", false
		}
	}
	return filepath.Join(dir, "subsys"), true
}
