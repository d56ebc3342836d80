// Package atomicfile writes files so that a reader sees the old content or the new,
// never a torn mix, and so that a secret is never readable by others, not even for the
// instant between create and chmod.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data, created with mode from the start, through a temporary
// file in the same directory and a rename.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteOwned(path, data, mode, -1, -1)
}

// WriteOwned is Write with the file given to uid and gid (-1 leaves either as the
// writer's) before it takes path's name, so the service reading it never sees it owned
// by anyone else.
func WriteOwned(path string, data []byte, mode os.FileMode, uid, gid int) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if uid != -1 || gid != -1 {
		if err = tmp.Chown(uid, gid); err != nil {
			return fmt.Errorf("write %s: give it to uid %d, gid %d: %w", path, uid, gid, err)
		}
	}
	// CreateTemp makes the file 0600; Chmod only ever widens a public file.
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
