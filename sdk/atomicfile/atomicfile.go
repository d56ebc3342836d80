// Package atomicfile writes files so that a reader sees the old content or the new,
// never a torn mix, and so that a secret is never readable by others, not even for the
// instant between create and chmod.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data, created with mode from the start, through a temporary
// file in the same directory and a rename.
func Write(path string, data []byte, mode os.FileMode) error {
	return Writer{}.Write(path, data, mode)
}

// WriteOwned is Write with the file given to uid and gid (-1 leaves either as the
// writer's) before it takes path's name, so the service reading it never sees it owned
// by anyone else.
func WriteOwned(path string, data []byte, mode os.FileMode, uid, gid int) error {
	return Writer{Owner: &Owner{UID: uid, GID: gid}}.Write(path, data, mode)
}

// A Writer writes files as Write does, given to its Owner and made durable by its Sync.
// The zero Writer is Write's: the writer's own ids, and an fsync per file.
type Writer struct {
	// Owner, if set, is given each file before the file takes its name.
	Owner *Owner
	// Sync makes a file's data durable before the file takes its name; nil is
	// (*os.File).Sync. A writer of many files at once may share that work among them.
	Sync func(*os.File) error
	// Temp, if set, gives the temporary file a write fills and renames to path: an
	// empty regular file in path's directory, open for writing, that nothing else
	// names or reads. Nil is a new file (os.CreateTemp).
	Temp func(path string) (*os.File, error)
}

// Owner is a file's user and group; -1 leaves either as the writer's.
type Owner struct{ UID, GID int }

// Write replaces path with data, as the package's Write does.
func (w Writer) Write(path string, data []byte, mode os.FileMode) error {
	temp := w.Temp
	if temp == nil {
		temp = newTemp
	}
	tmp, err := temp(path)
	if err != nil {
		return failed(path, err)
	}
	return w.fill(tmp, path, data, mode)
}

func newTemp(path string) (*os.File, error) {
	return os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
}

// fill gives tmp its owner and mode, writes data, syncs it and renames it to path. On
// failure tmp is removed.
func (w Writer) fill(tmp *os.File, path string, data []byte, mode os.FileMode) (err error) {
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if o := w.Owner; o != nil && (o.UID != -1 || o.GID != -1) {
		if err = tmp.Chown(o.UID, o.GID); err != nil {
			return failed(path, fmt.Errorf("give it to uid %d, gid %d: %w", o.UID, o.GID, errorOf(err)))
		}
	}
	// The mode is set before data goes in: a new temporary file is 0600, one from Temp
	// empty.
	if err = tmp.Chmod(mode); err != nil {
		return failed(path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return failed(path, err)
	}
	sync := w.Sync
	if sync == nil {
		sync = (*os.File).Sync
	}
	if err = sync(tmp); err != nil {
		return failed(path, err)
	}
	if err = tmp.Close(); err != nil {
		return failed(path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return failed(path, err)
	}
	return nil
}

// failed says that writing path failed, naming path and what went wrong, not the
// temporary file's random name: the same failure reads the same every time (a unit
// publishes its last error only when it changes).
func failed(path string, err error) error {
	return fmt.Errorf("write %s: %w", path, errorOf(err))
}

// errorOf is err without the path of a *os.PathError or *os.LinkError, which names the
// temporary file: "write: no space left on device". errors.Is still finds the errno.
func errorOf(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	if le, ok := errors.AsType[*os.LinkError](err); ok {
		return fmt.Errorf("%s: %w", le.Op, le.Err)
	}
	return err
}
