package server

import (
	"testing"
	"time"
)

func TestLingerFor(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name        string
		sinceWrote  time.Duration
		sinceQueued time.Duration
		queued      int
		closing     bool
		want        time.Duration
	}{
		{"busy connection, one message just queued", 1 * ms, 0, 1, false, lingerWait},
		{"busy connection, oldest queued 1.5 ms ago", 2 * ms, 1500 * time.Microsecond, 3, false, 500 * time.Microsecond},
		{"busy connection, oldest waited its time already", 1 * ms, 5 * ms, 2, false, 0},
		{"wrote 2.9 ms ago: still busy", 2900 * time.Microsecond, 0, 1, false, lingerWait},
		{"wrote 3 ms ago: quiet", 3 * ms, 0, 1, false, 0},
		{"a member of a room at 100 msgs/s: quiet", 9 * ms, 0, 1, false, 0},
		{"a long queue goes at once", 1 * ms, 0, lingerBelow, false, 0},
		{"one short of a long queue lingers", 1 * ms, 0, lingerBelow - 1, false, lingerWait},
		{"empty queue (a ping or a resume)", 1 * ms, 0, 0, false, 0},
		{"closing", 1 * ms, 0, 1, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lingerFor(tt.sinceWrote, tt.sinceQueued, tt.queued, tt.closing); got != tt.want {
				t.Errorf("lingerFor(%v, %v, %d, %v) = %v, want %v",
					tt.sinceWrote, tt.sinceQueued, tt.queued, tt.closing, got, tt.want)
			}
		})
	}
}
