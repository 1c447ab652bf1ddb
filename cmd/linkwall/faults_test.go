package main

// Fault tests with the real binary: `go build` once, run `linkwall serve`
// as a child process, SIGKILL it in the middle of a burst of sends,
// restart it on the same data directory, and start it on data directories
// it cannot use.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/linkwall/linkwall/internal/chat"
)

// nobody is the unprivileged uid/gid the read-only cases run as when the
// tests run as root, for whom permission bits do not apply.
const nobody = 65534

// lockedBuffer collects a child's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// child is a running `linkwall serve` process.
type child struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:PORT
	stderr *lockedBuffer
	exited chan struct{}
}

// startChild runs `bin serve` on 127.0.0.1:0 with data dir and returns once
// it prints its address.
func startChild(t *testing.T, bin, dir string) *child {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data", dir)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stderr: stderr, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		re := regexp.MustCompile(`open (http://\S+)/ in a browser`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		_ = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	select {
	case c.base = <-addr:
	case <-c.exited:
		t.Fatalf("linkwall serve exited: %v\n%s", cmd.ProcessState, stderr)
	case <-time.After(waitFor):
		t.Fatalf("linkwall serve did not start\n%s", stderr)
	}
	return c
}

// api runs one request against the child and decodes the answer.
func (c *child) api(t *testing.T, token, method, path string, body, out any) {
	t.Helper()
	callAPI(t, c.base, token, method, path, body, 0, out)
}

// buildLinkwall builds the binary into dir.
func buildLinkwall(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "linkwall")
	start := time.Now()
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built linkwall in %v", time.Since(start).Round(time.Millisecond))
	return bin
}

func TestBinaryFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	root := t.TempDir()
	// Everything under root must be reachable for the unprivileged runs.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := buildLinkwall(t, root)
	data := filepath.Join(root, "data")

	t.Run("SIGKILL mid-burst loses no acknowledged message", func(t *testing.T) {
		killMidBurst(t, bin, data)
	})
	t.Run("regular file as data dir", func(t *testing.T) {
		path := filepath.Join(root, "a-file")
		if err := os.WriteFile(path, []byte("not a directory\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, bin, path, false)
	})
	t.Run("read-only data dir", func(t *testing.T) {
		ro := filepath.Join(root, "ro")
		if err := os.Mkdir(ro, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, bin, ro, true)
		expectRefusal(t, bin, filepath.Join(ro, "missing"), true)
	})
	t.Run("read-only existing data: refused, then intact", func(t *testing.T) {
		before := countFiles(t, data)
		setMode(t, data, 0o555, 0o444)
		expectRefusal(t, bin, data, true)
		setMode(t, data, 0o755, 0o644)
		if after := countFiles(t, data); !maps.Equal(after, before) {
			t.Fatalf("the refused start changed the data dir: %v → %v", before, after)
		}
		c := startChild(t, bin, data)
		resp, err := http.Get(c.base + "/readyz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("readyz after the refused start: %v %v", resp, err)
		}
		resp.Body.Close()
	})
}

// burstAck is one acknowledged send.
type burstAck struct {
	room, id, text string
	seq            int64
}

// killMidBurst: several clients send as fast as the server acknowledges
// (and the rate limit allows), recording every acknowledgement; the server
// is SIGKILLed in the middle; after a restart on the same data dir every
// acknowledged message is there with its seq, and seqs have no gap.
func killMidBurst(t *testing.T, bin, data string) {
	c := startChild(t, bin, data)
	type user struct {
		token string
		chat.User
	}
	var users []user
	for i := range 4 {
		var s struct {
			Token string
			User  chat.User
		}
		c.api(t, "", "POST", "/api/v1/session", map[string]string{"name": fmt.Sprint("sender", i)}, &s)
		users = append(users, user{s.Token, s.User})
	}
	var g, d1, d2 struct{ Room chat.Room }
	ids := []string{users[1].ID, users[2].ID, users[3].ID}
	c.api(t, users[0].token, "POST", "/api/v1/rooms", map[string]any{"kind": "group", "name": "burst", "members": ids}, &g)
	c.api(t, users[0].token, "POST", "/api/v1/rooms", map[string]any{"kind": "direct", "members": []string{users[1].ID}}, &d1)
	c.api(t, users[2].token, "POST", "/api/v1/rooms", map[string]any{"kind": "direct", "members": []string{users[3].ID}}, &d2)
	roomsOf := [][]string{{g.Room.ID, d1.Room.ID}, {g.Room.ID, d1.Room.ID}, {g.Room.ID, d2.Room.ID}, {g.Room.ID, d2.Room.ID}}

	const killAfter = 250 // past the users' bursts: the rate limit paces the rest
	var (
		mu    sync.Mutex
		acks  []burstAck
		total atomic.Int32
		wg    sync.WaitGroup
		kill  sync.Once
	)
	killed := make(chan struct{})
	for i, u := range users {
		h := http.Header{"Authorization": {"Bearer " + u.token}}
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(c.base, "http")+"/ws", h)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		// The reader hands each acknowledgement or refusal to the sender.
		results := make(chan frame, 16)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(results)
			for {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					return
				}
				for _, line := range bytes.Split(msg, []byte("\n")) {
					var f frame
					if json.Unmarshal(line, &f) != nil {
						continue
					}
					if f.Type == "message" && f.ClientMsgID != "" {
						f.Msg = new(chat.Message)
						_ = json.Unmarshal(f.Raw, f.Msg)
					}
					if (f.Type == "message" && f.ClientMsgID != "") || f.Type == "error" {
						results <- f
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				room := roomsOf[i][n%2]
				id := fmt.Sprintf("u%d-%d", i, n)
				text := fmt.Sprintf("burst %s from %s", id, u.Name)
				for acked := false; !acked; {
					if ws.WriteJSON(map[string]string{"type": "send", "room": room, "text": text, "client_msg_id": id}) != nil {
						return
					}
					f, ok := <-results
					if !ok {
						return // the server is gone: this send may or may not be stored
					}
					switch {
					case f.Type == "error" && f.Code == chat.ERateLimited:
						time.Sleep(60 * time.Millisecond) // and send the same id again
					case f.Type == "error":
						t.Errorf("send %s: %s", id, f.Code)
						return
					default:
						if f.ClientMsgID != id || f.Msg.Room != room || f.Msg.Text != text {
							t.Errorf("ack %+v for send %s", f.Msg, id)
							return
						}
						mu.Lock()
						acks = append(acks, burstAck{room, f.Msg.ID, text, f.Msg.Seq})
						mu.Unlock()
						acked = true
						if total.Add(1) >= killAfter {
							kill.Do(func() {
								_ = c.cmd.Process.Signal(syscall.SIGKILL)
								close(killed)
							})
						}
					}
				}
			}
		}()
	}
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		t.Fatalf("only %d acknowledgements in 30 s\n%s", total.Load(), c.stderr)
	}
	<-c.exited
	wg.Wait() // every acknowledgement that reached a client is recorded
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("server was not killed by SIGKILL: %v", c.cmd.ProcessState)
	}

	c = startChild(t, bin, data)
	byRoom := map[string][]burstAck{}
	for _, a := range acks {
		byRoom[a.room] = append(byRoom[a.room], a)
	}
	for room, want := range byRoom {
		reader := users[0].token
		if room == d2.Room.ID {
			reader = users[2].token
		}
		var h struct{ Messages []chat.Message }
		c.api(t, reader, "GET", "/api/v1/rooms/"+room+"/messages?limit=1000", nil, &h)
		for i, m := range h.Messages {
			if m.Seq != int64(i+1) {
				t.Fatalf("room %s: message %d has seq %d: a gap", room, i, m.Seq)
			}
		}
		for _, a := range want {
			if a.seq < 1 || a.seq > int64(len(h.Messages)) {
				t.Fatalf("room %s: acknowledged seq %d lost (%d stored)", room, a.seq, len(h.Messages))
			}
			if m := h.Messages[a.seq-1]; m.ID != a.id || m.Text != a.text {
				t.Fatalf("room %s seq %d: stored %q (%s), acknowledged %q (%s)", room, a.seq, m.Text, m.ID, a.text, a.id)
			}
		}
		t.Logf("room %s: %d acknowledged before the kill, %d stored", room, len(want), len(h.Messages))
	}
	// A graceful stop this time.
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.exited:
	case <-time.After(waitFor):
		t.Fatal("no exit after SIGTERM")
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM\n%s", code, c.stderr)
	}
}

// expectRefusal runs `linkwall serve --data dir` (as nobody when root and
// asked to) and checks that it exits non-zero with an error naming dir.
func expectRefusal(t *testing.T, bin, dir string, unprivileged bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--addr", "127.0.0.1:0", "--data", dir)
	if unprivileged && os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("serve --data %s kept running", dir)
	}
	msg := ""
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(line, "linkwall serve: ") {
			msg = line
		}
	}
	if err == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(msg, dir) {
		t.Fatalf("serve --data %s: %v, message %q; want exit status 1 and an error naming the path\n%s", dir, err, msg, stderr.String())
	}
	t.Logf("%s", msg)
}

// setMode sets the mode of dir and of every file in it.
func setMode(t *testing.T, dir string, dirMode, fileMode os.FileMode) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Chmod(filepath.Join(dir, e.Name()), fileMode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		t.Fatal(err)
	}
}

// countFiles returns the data dir's file names and sizes.
func countFiles(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.Size()
	}
	return out
}
