//go:build !unix

package sqlite

import "os"

// lockDir is a no-op where flock(2) does not exist: one process per data
// dir is then the operator's rule to keep.
func lockDir(string) (*os.File, error) { return nil, nil }
