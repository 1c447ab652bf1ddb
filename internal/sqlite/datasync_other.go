//go:build !linux

package sqlite

import "os"

// datasync is a full fsync where fdatasync(2) is not available.
func datasync(f *os.File) error { return f.Sync() }

// syncDirectory makes the names in dir durable where a directory can be
// opened and synced; elsewhere (Windows) the file system keeps them.
func syncDirectory(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	defer d.Close()
	d.Sync()
	return nil
}
