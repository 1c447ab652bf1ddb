package sqlite

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"
)

// openChildEnv makes the test binary act as the child of
// TestOpenUnprivileged: it opens the directory named by the value and
// prints "OK" or "ERR <error>".
const openChildEnv = "LINKWALL_SQLITE_OPEN_CHILD"

// nobody is the unprivileged uid/gid the child runs as.
const nobody = 65534

// TestOpenUnprivileged covers read-only data directories and files when
// the tests run as root (as they do in CI containers), where permission
// bits do not apply to the test process itself: it copies the test binary
// where an unprivileged user can run it and opens the store as that user.
func TestOpenUnprivileged(t *testing.T) {
	if v := os.Getenv(openChildEnv); v != "" {
		openChild(v)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: TestOpenErrors covers read-only directories with chmod")
	}
	root := t.TempDir()
	// t.TempDir's directories are 0700; nobody must reach inside.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(root, "sqlite.test")
	copyFile(t, os.Args[0], bin, 0o755)

	mkdir := func(name string, mode os.FileMode, uid int) string {
		d := filepath.Join(root, name)
		if err := os.Mkdir(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil { // Mkdir's mode is masked by umask
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// withDB creates a database in d (as root) and hands it to root with mode.
	withDB := func(d string, mode os.FileMode) string {
		s := openT(t, d)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(d, FileName), mode); err != nil {
			t.Fatal(err)
		}
		return d
	}

	cases := []struct {
		name   string
		dir    string
		wantOK bool
	}{
		// The control: proves the child can open a store at all, so the
		// refusals below are about permissions.
		{"own dir", mkdir("own", 0o700, nobody), true},
		{"own dir, existing db", withDB(mkdir("owndb", 0o700, nobody), 0o600), false}, // db file is root's 0600
		{"read-only dir", mkdir("ro", 0o555, 0), false},
		{"missing dir under read-only dir", filepath.Join(mkdir("ro2", 0o555, 0), "data"), false},
		{"read-only dir, existing db", withDB(mkdir("rodb", 0o755, 0), 0o644), false},
		{"writable dir, read-only db", withDB(mkdir("rofile", 0o777, 0), 0o644), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^TestOpenUnprivileged$")
			cmd.Dir = root
			cmd.Env = append(os.Environ(), openChildEnv+"="+tc.dir)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			line, _, _ := strings.Cut(string(out), "\n")
			t.Logf("as uid %d: %s", nobody, line)
			switch {
			case tc.wantOK && line != "OK":
				t.Errorf("Open failed: %s", line)
			case !tc.wantOK && !strings.HasPrefix(line, "ERR sqlite: "):
				t.Errorf("Open = %q, want a clear error", line)
			}
		})
	}
}

// openChild opens dir, appends nothing, and reports.
func openChild(dir string) {
	s, err := Open(context.Background(), dir, zap.NewNop())
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(0)
	}
	if err := s.Close(); err != nil {
		fmt.Println("ERR close:", err)
		os.Exit(0)
	}
	fmt.Println("OK")
	os.Exit(0)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
