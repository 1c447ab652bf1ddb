package cputime

import (
	"testing"
	"time"
)

// TestProcessCountsWork spins until the process's CPU time has grown by
// 5 ms; a reading that does not follow the work fails after 5 s of wall
// clock (a generous bound for a thread that shares its cores).
func TestProcessCountsWork(t *testing.T) {
	before := Process()
	if before == 0 {
		t.Skip("CPU time is not measured on this platform")
	}
	deadline := time.Now().Add(5 * time.Second)
	for loops := 0; Process()-before < 5*time.Millisecond; loops++ {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time grew by %v in 5 s of spinning (%d loops)", Process()-before, loops)
		}
	}
}
