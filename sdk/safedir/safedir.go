// Package safedir checks the directories and key files tlsrelay trusts. A state or
// output directory planted by another user, open to others, or a symlink that leads
// elsewhere is refused, not used: a foreign CA would otherwise sign in silence, and a
// unit's key would land where someone else can read it.
package safedir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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

// ReadSecret reads a file that holds a secret (a PIN, a password, a seal key): it must
// be readable and writable by its owner alone (mode 0600 or stricter) and owned by this
// user or by root (an operator's provisioning); anything else is refused before a byte
// is read, saying why. A symlink is followed, as secret volumes (Kubernetes, systemd
// credentials) are links; the file it reaches is the one checked and read.
func ReadSecret(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0) // a FIFO may not hold us up
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, info.Mode().Type())
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() && st.Uid != 0 {
		return nil, fmt.Errorf("%s is owned by uid %d, neither this user (uid %d) nor root: another user may have put it there", path, st.Uid, os.Getuid())
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: others may read or change the secret; chmod 600 %s", path, perm, path)
	}
	return io.ReadAll(f)
}

func owned(path string, info fs.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s is owned by uid %d, not by this user (uid %d)", path, st.Uid, os.Getuid())
	}
	return nil
}

// LockFile is the lock file earlier versions of Lock made in a directory. Lock no longer
// makes it (it locks the directory itself); one left behind is locked too.
//
// Deprecated: Lock makes no file.
const LockFile = ".tlsrelay.lock"

// Lock takes an exclusive lock on dir for this process, without waiting: a directory
// another process holds is an error naming that process. unlock releases it.
//
// The lock is a flock on the directory itself, so no file is made for it: creating an
// inode is the dearest file operation on some file systems (on ext4 here 10 to 50 times
// a rename), and a unit's output directory holds only what the unit serves. A
// LockFile an earlier version left is locked as well (opened, never created), so a
// process of that version on the same directory is still kept out.
func Lock(dir string) (unlock func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := flock(d, dir); err != nil {
		d.Close()
		return nil, err
	}
	legacy, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return func() { d.Close() }, nil // closing releases the lock
	}
	if err == nil {
		err = flock(legacy, dir)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return func() { legacy.Close(); d.Close() }, nil
}

// flock locks f (of dir) exclusively without waiting.
func flock(f *os.File, dir string) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return fmt.Errorf("%s is in use by another tlsrelay process (pid %s)", dir, lockHolder(f))
	default:
		return fmt.Errorf("lock %s: %w", dir, err)
	}
}

// lockHolder names the process holding a flock on f, from /proc/locks (Linux), or
// "unknown". A line there reads "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF":
// the pid, then the device (major:minor, in hex) and inode of the locked file.
func lockHolder(f *os.File) string {
	info, err := f.Stat()
	st, ok := info.Sys().(*syscall.Stat_t)
	if err != nil || !ok {
		return "unknown"
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return "unknown"
	}
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino)
	for _, line := range strings.Split(string(locks), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 6 && fields[1] == "FLOCK" && fields[5] == want {
			return fields[4]
		}
	}
	return "unknown"
}
