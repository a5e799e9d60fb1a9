package cli

// unixUmask does nothing on Windows, which has no umask.
func unixUmask(mask int) int { return 0 }
