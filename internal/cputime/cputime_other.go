//go:build !unix

package cputime

import "time"

// Process is not measured on this platform: it is always 0, and callers
// leave out their CPU figures.
func Process() time.Duration { return 0 }
