// Package safedir checks the directories and key files tlsrelay trusts. A state or
// output directory planted by another user, open to others, or a symlink that leads
// elsewhere is refused, not used: a foreign CA would otherwise sign in silence, and a
// unit's key would land where someone else can read it.
package safedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Check returns why dir may not be trusted, or nil: it must be a real directory (not
// a symlink), owned by this process's user, and not writable by group or others.
func Check(dir string) error {
	info, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(dir)
		return fmt.Errorf("%s is a symlink (to %s); give the directory itself", dir, target)
	case !info.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := owned(dir, info); err != nil {
		return err
	}
	if perm := info.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s has mode %04o: others could replace what is in it; chmod go-w %s", dir, perm, dir)
	}
	return nil
}

// Ensure creates dir with mode (and its parents) when missing, then checks it.
func Ensure(dir string, mode os.FileMode) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, mode); err != nil {
			return err
		}
	}
	return Check(dir)
}

// CheckKeyFile returns why a private key file may not be trusted, or nil: it must be a
// regular file (not a symlink), owned by this user, and readable by no one else.
func CheckKeyFile(path string) error {
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("key %s is not a regular file (%s)", path, info.Mode().Type())
	}
	if err := owned(path, info); err != nil {
		return err
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("key %s has mode %04o: others can read or replace it; it must be 0600", path, perm)
	}
	return nil
}

func owned(path string, info fs.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s is owned by uid %d, not by this user (uid %d)", path, st.Uid, os.Getuid())
	}
	return nil
}

// LockFile is the name of the lock Lock takes in a directory.
const LockFile = ".tlsrelay.lock"

// Lock takes an exclusive lock on dir for this process, without waiting: a directory
// another process holds is an error naming that process. unlock releases it.
func Lock(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another tlsrelay process (pid %s)", dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil // closing releases the lock
}
