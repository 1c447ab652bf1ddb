package sqlite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
)

// crashChildEnv makes the test binary act as the appending child of
// TestCrashKeepsAcknowledged: its value is "DIR ROOM1,ROOM2,… USERID".
const crashChildEnv = "LINKWALL_SQLITE_CRASH_CHILD"

// TestCrashKeepsAcknowledged runs a child process that appends from many
// goroutines and prints every acknowledged message, SIGKILLs it in the
// middle of the burst, reopens the store and checks that every
// acknowledged message is there with its seq, and that seqs have no gap.
func TestCrashKeepsAcknowledged(t *testing.T) {
	if v := os.Getenv(crashChildEnv); v != "" {
		crashChild(v)
		return
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	alice := chattest.NewUser(t, s, "alice", 0)
	var rooms []string
	for i := range 3 {
		rooms = append(rooms, chattest.NewGroup(t, s, fmt.Sprint("r", i), alice.ID).ID)
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledged$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir+" "+strings.Join(rooms, ",")+" "+alice.ID)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type ack struct {
		seq int64
		id  string
	}
	acked := map[string][]ack{} // room → acks
	n := 0
	const killAfter = 400 // acknowledged appends before the kill
	deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var room, id string
		var seq int64
		if _, err := fmt.Sscanf(sc.Text(), "ack %s %d %s", &room, &seq, &id); err != nil {
			continue // a line torn by the kill was never a complete acknowledgement
		}
		acked[room] = append(acked[room], ack{seq, id})
		if n++; n == killAfter {
			// Lines still in the pipe were acknowledged too: keep reading.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	if n < killAfter {
		t.Fatalf("child acknowledged only %d appends before it ended (%v)", n, err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", err)
	}
	t.Logf("child killed after %d acknowledged appends", n)

	s = openT(t, dir)
	defer s.Close()
	for _, room := range rooms {
		ms, err := s.Messages(ctx, room, 0, MaxPage)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range ms {
			if m.Seq != int64(i+1) {
				t.Fatalf("room %s: message %d has seq %d", room, i, m.Seq)
			}
		}
		for _, a := range acked[room] {
			if a.seq < 1 || a.seq > int64(len(ms)) {
				t.Fatalf("room %s: acknowledged seq %d lost (%d stored)", room, a.seq, len(ms))
			}
			if got := ms[a.seq-1].ID; got != a.id {
				t.Fatalf("room %s seq %d: stored %s, acknowledged %s", room, a.seq, got, a.id)
			}
		}
		t.Logf("room %s: %d acknowledged, %d stored", room, len(acked[room]), len(ms))
	}
}

// crashChild appends until it is killed, printing "ack ROOM SEQ ID" for
// each acknowledged message.
func crashChild(arg string) {
	var dir, roomList, user string
	if _, err := fmt.Sscan(arg, &dir, &roomList, &user); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	rooms := strings.Split(roomList, ",")
	s, err := Open(context.Background(), dir, zap.NewNop())
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				m := chat.Message{Room: rooms[(g+i)%len(rooms)], Sender: chat.Sender{ID: user, Name: "alice"},
					Text: fmt.Sprintf("%d/%d", g, i), ClientMsgID: fmt.Sprintf("%d-%d", g, i)}
				got, _, err := s.Append(context.Background(), m)
				if err != nil {
					fmt.Fprintln(os.Stderr, "crash child: append:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(w, "ack %s %d %s\n", got.Room, got.Seq, got.ID)
				w.Flush() // printed means acknowledged: never hold an ack in a buffer
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
