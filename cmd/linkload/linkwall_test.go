package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/server"
	"github.com/linkwall/linkwall/internal/sqlite"
)

// startLinkwall runs the real server in-process on loopback, with the
// SQLite store and the link bot, and a send rate that does not get in the
// way of a short test.
func startLinkwall(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: store, Bot: bot.New(nil, nil),
		Limits: server.Limits{SendRate: 1000, SendBurst: 1000}})
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
		store.Close()
	})
	return hs.URL
}

// Against linkwall the counts must hold although LinkBot adds messages of
// its own (notices about blocked links) to the rooms.
func TestLoadAgainstLinkwall(t *testing.T) {
	url := startLinkwall(t)
	out := filepath.Join(t.TempDir(), "r.json")
	runCmd(t, "-url", url, "-users", "20", "-rooms", "2", "-group", "10",
		"-rate", "200", "-n", "200", "-q", "-json", out)
	r := readReport[Report](t, out)
	checkDelivered(t, "linkwall", r.Load, 200, 10)
	// The server's part of the latency, read from its /metrics. (The two
	// means are over different messages: appends include LinkBot's own, so
	// they are not compared with each other.)
	if l := r.Load; l.ServerAppendMs <= 0 || l.ServerSendMs <= 0 || l.ServerSyncMs <= 0 || l.ServerBatch < 1 {
		t.Errorf("server means: append %vms, send %vms, sync %vms, batch %v; want all > 0, batch ≥ 1",
			l.ServerAppendMs, l.ServerSendMs, l.ServerSyncMs, l.ServerBatch)
	}
}

func TestResumeAgainstLinkwall(t *testing.T) {
	url := startLinkwall(t)
	out := filepath.Join(t.TempDir(), "r.json")
	runCmd(t, "resume", "-url", url, "-users", "11", "-msgs", "200", "-resume-rate", "400", "-reps", "2", "-q", "-json", out)
	r := readReport[Report](t, out)
	rr := r.Resume
	if rr == nil || rr.Messages != 200 || rr.Reps != 2 || len(rr.ResumeMs) != 2 || !rr.InOrder {
		t.Fatalf("resume %+v, want 2 in-order resumes of 200 messages", rr)
	}
	for i, ms := range rr.ResumeMs {
		if ms <= 0 || rr.DialMs[i] < ms {
			t.Errorf("rep %d: resume %vms, dial+resume %vms", i, ms, rr.DialMs[i])
		}
	}
}
