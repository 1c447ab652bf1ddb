package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

// startServer runs `linkwall serve` in-process on 127.0.0.1:0 with a
// temporary data dir until the test ends, and returns its base URL
// ("http://127.0.0.1:PORT"). ctx bounds the start-up.
func startServer(t *testing.T, ctx context.Context) string {
	t.Helper()
	m := NewMain()
	m.Logger = zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
	if err := m.ParseFlags(ctx, []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--walkthrough-step", "0"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return "http://" + m.Addr()
}

func TestParseFlags(t *testing.T) {
	t.Setenv("LINKWALL_ADDR", "127.0.0.1:9999")
	t.Setenv("LINKWALL_DATA", "/from/env")
	t.Setenv("LINKWALL_ALLOWED_ORIGINS", "https://a.example, https://b.example")
	t.Setenv("LINKWALL_WALKTHROUGH_STEP", "2s")
	m := NewMain()
	if err := m.ParseFlags(context.Background(), []string{"--data", "/from/flag", "--era", "walled"}); err != nil {
		t.Fatal(err)
	}
	if m.ListenAddr != "127.0.0.1:9999" || m.DataDir != "/from/flag" || m.Era != "walled" ||
		m.WalkthroughStep != 2*time.Second || strings.Join(m.AllowedOrigins, "|") != "https://a.example|https://b.example" {
		t.Fatalf("settings %+v", m)
	}

	for _, args := range [][]string{
		{"--addr", "nonsense"},
		{"--walkthrough-step", "-1s"},
		{"--no-such-flag"},
		{"extra"},
	} {
		m := NewMain()
		m.Stderr = io.Discard
		if err := m.ParseFlags(context.Background(), args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestRunRefusesBadSettings(t *testing.T) {
	for name, args := range map[string][]string{
		"unknown era":       {"--era", "bronze-age"},
		"redis unreachable": {"--redis", "redis://127.0.0.1:1/0"},
		"bad policy":        {"--policy", "/no/such/policy.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			m := NewMain()
			m.Logger = zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel))
			args = append([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir()}, args...)
			if err := m.ParseFlags(context.Background(), args); err != nil {
				t.Fatal(err)
			}
			if err := m.Run(context.Background()); err == nil {
				t.Error("Run succeeded")
			}
			_ = m.Close()
		})
	}
}
