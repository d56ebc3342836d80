// Package atomicfile writes files so that a reader sees the old content or the new,
// never a torn mix, and so that a secret is never readable by others, not even for the
// instant between create and chmod.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
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
	return Writer{Owner: OwnerOf(uid, gid)}.Write(path, data, mode)
}

// WriteOwnedReusing is WriteOwned through spare (see Writer.WriteReusing).
func WriteOwnedReusing(path, spare string, data []byte, mode os.FileMode, uid, gid int) error {
	return Writer{Owner: OwnerOf(uid, gid)}.WriteReusing(path, spare, data, mode)
}

// A Writer writes files as Write does, given to its Owner and made durable by its Sync.
// The zero Writer is Write's: the writer's own ids, and an fsync per file.
type Writer struct {
	// Owner, if set, is given each file before the file takes its name.
	Owner *Owner
	// Sync makes a file's data durable before the file takes its name; nil is
	// (*os.File).Sync. A SyncGroup's Sync shares that work among concurrent writers.
	Sync func(*os.File) error
}

// Owner is a file's user and group; -1 leaves either as the writer's.
type Owner struct{ UID, GID int }

// OwnerOf is the Owner for uid and gid; nil (nothing to change) when both are -1.
func OwnerOf(uid, gid int) *Owner {
	if uid == -1 && gid == -1 {
		return nil
	}
	return &Owner{UID: uid, GID: gid}
}

// Write replaces path with data, as the package's Write does.
func (w Writer) Write(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return w.fill(tmp, path, data, mode)
}

// WriteReusing is Write through spare, a file in path's directory that the caller no
// longer needs, instead of a new temporary file: spare is renamed aside, emptied,
// filled and renamed to path. Creating an inode is the dearest step of a write on some
// file systems (on ext4 here 10 to 50 times a rename); this skips it. A missing spare,
// or one with other links (they would see data), falls back to Write. Meant for public
// files: spare's old content is gone only once it is emptied.
func (w Writer) WriteReusing(path, spare string, data []byte, mode os.FileMode) error {
	if filepath.Dir(spare) != filepath.Dir(path) {
		return fmt.Errorf("write %s: the spare %s is in another directory", path, spare)
	}
	aside := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+filepath.Base(spare))
	if err := os.Rename(spare, aside); err != nil {
		return w.Write(path, data, mode)
	}
	tmp, err := os.OpenFile(aside, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		os.Remove(aside)
		return w.Write(path, data, mode)
	}
	// Emptied only once it is known to be ours alone.
	if !soleLink(tmp) || tmp.Truncate(0) != nil {
		tmp.Close()
		os.Remove(aside)
		return w.Write(path, data, mode)
	}
	return w.fill(tmp, path, data, mode)
}

// soleLink says whether f is a regular file with no other name.
func soleLink(f *os.File) bool {
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 1
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
	if o := w.Owner; o != nil {
		if err = tmp.Chown(o.UID, o.GID); err != nil {
			return fmt.Errorf("write %s: give it to uid %d, gid %d: %w", path, o.UID, o.GID, err)
		}
	}
	// The mode is set before data goes in: a new temporary file is 0600, a reused one
	// empty.
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	sync := w.Sync
	if sync == nil {
		sync = (*os.File).Sync
	}
	if err = sync(tmp); err != nil {
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
