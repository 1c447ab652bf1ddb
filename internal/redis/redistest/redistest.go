// Package redistest gives tests a Redis: the shared one at 127.0.0.1:6379
// with a key prefix of their own (so tests run in parallel and leave
// nothing behind), or a redis-server child process of their own that they
// may kill and restart.
//
// Without Redis the tests skip with a message saying so; with
// LINKWALL_REQUIRE_INTEGRATION=1 (CI) they fail instead.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultURL is the shared Redis; LINKWALL_TEST_REDIS overrides it.
const DefaultURL = "redis://127.0.0.1:6379/0"

// startWait bounds how long a started redis-server may take to answer.
const startWait = 10 * time.Second

// unavailable skips t, or fails it when integration tests are required.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("LINKWALL_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("%s (LINKWALL_REQUIRE_INTEGRATION=1)", msg)
	}
	t.Skipf("%s; skipping (set LINKWALL_REQUIRE_INTEGRATION=1 to fail instead)", msg)
}

// URL returns the shared Redis's URL after checking that it answers.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("LINKWALL_TEST_REDIS")
	if url == "" {
		url = DefaultURL
	}
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatalf("LINKWALL_TEST_REDIS: %v", err)
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		unavailable(t, "no Redis at %s: %v", url, err)
	}
	return url
}

var prefixes atomic.Int64

// Prefix returns a key prefix no other test uses and deletes the keys
// under it, in the Redis at url, when t ends.
func Prefix(t testing.TB, url string) string {
	t.Helper()
	p := fmt.Sprintf("lwtest:%d:%d:%s:", os.Getpid(), prefixes.Add(1), strings.ReplaceAll(t.Name(), "/", "."))
	t.Cleanup(func() {
		opts, err := goredis.ParseURL(url)
		if err != nil {
			return
		}
		c := goredis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, escapeGlob(p)+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 1000)
			c.Unlink(ctx, keys[:n]...)
			keys = keys[n:]
		}
	})
	return p
}

// escapeGlob quotes the characters SCAN MATCH treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Server is a redis-server child process on a free loopback port, with
// the append-only file fsynced on every write in a temporary directory, so
// a kill -9 and a restart keep every write it acknowledged.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	// URL is redis://127.0.0.1:PORT/0; it stays the same across restarts.
	URL string
}

// Start starts a redis-server for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: port, URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)}
	t.Cleanup(s.Kill)
	s.Restart()
	return s
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart (re)starts the server on the same port and directory and waits
// until it answers; the data written before a Kill is read back.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("redis log: %v", err)
	}
	defer log.Close()
	cmd := exec.Command(s.bin,
		"--bind", "127.0.0.1", "--port", fmt.Sprint(s.port), "--dir", s.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always",
		"--daemonize", "no", "--protected-mode", "yes")
	cmd.Stdout, cmd.Stderr = log, log
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	opts, _ := goredis.ParseURL(s.URL)
	opts.MaxRetries = -1
	c := goredis.NewClient(opts)
	defer c.Close()
	deadline := time.Now().Add(startWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server on port %d did not answer within %v: %v\n%s", s.port, startWait, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
