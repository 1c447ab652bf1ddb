//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockName is the file in the data dir that one process holds locked.
const lockName = "linkwall.lock"

// lockDir takes an exclusive advisory lock on the data dir. The writer keeps
// each room's next seq in memory, so a second process on the same dir would
// hand out seqs twice; it must fail at Open instead. The kernel drops the
// lock when the process dies, so a crash never leaves the dir locked.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: lock data dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("sqlite: data dir %s is in use by another linkwall process", dir)
		}
		return nil, fmt.Errorf("sqlite: lock data dir %s: %w", dir, err)
	}
	return f, nil
}
