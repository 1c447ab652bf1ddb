//go:build !unix

package server

import "time"

// cpuTime is not measured here; benchmarks leave out their CPU figures.
func cpuTime() time.Duration { return 0 }
