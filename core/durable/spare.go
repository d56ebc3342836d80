// Package durable is how tlsrelay's agents make their files durable cheaply: a group
// flush for the files of many units written at once (SyncGroup), and a spent file's
// inode reused for a new one (Spare). Both plug into an sdk atomicfile.Writer.
package durable

import (
	"os"
	"path/filepath"
	"syscall"
)

// Spare is an atomicfile.Writer's Temp that reuses spare, a file in the written path's
// directory that the caller no longer needs, instead of creating one: spare is renamed
// aside, checked and emptied. Creating an inode is the dearest step of a write on some
// file systems, far dearer than a rename (docs/BENCHMARKS.md); this skips it. A missing spare,
// one in another directory, or one with other links (they would see the data) gives a
// new temporary file instead. Meant for public files: spare's old content is gone only
// once it is emptied.
func Spare(spare string) func(path string) (*os.File, error) {
	return func(path string) (*os.File, error) {
		if f := reuse(spare, path); f != nil {
			return f, nil
		}
		return os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	}
}

// reuse renames spare aside for path and opens it emptied; nil when it cannot be reused.
func reuse(spare, path string) *os.File {
	if filepath.Dir(spare) != filepath.Dir(path) {
		return nil
	}
	aside := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+filepath.Base(spare))
	if err := os.Rename(spare, aside); err != nil {
		return nil
	}
	f, err := os.OpenFile(aside, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		os.Remove(aside)
		return nil
	}
	// Emptied only once it is known to be ours alone.
	if !soleLink(f) || f.Truncate(0) != nil {
		f.Close()
		os.Remove(aside)
		return nil
	}
	return f
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
