// Package web holds the browser demo: plain HTML, CSS and ES modules,
// embedded in the binary and served at "/".
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files returns the page's files, rooted so that "index.html" is at the top.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
