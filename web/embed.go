// Package web holds the browser dashboard: its TypeScript source, built
// by Vite into dist/, is embedded here so that one binary is the whole install.
// server imports it; it imports nothing of subsys.
package web

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Dist returns the built UI, or nil when `npm run build` has not been run
// (dist/ holds only .gitkeep).
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil
	}
	if _, err := fs.Stat(sub, "index.html"); err != nil {
		return nil
	}
	return sub
}
