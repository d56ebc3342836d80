package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// The trail is the record of what the group's CA signed, so what another local user
// can put where it goes must not become part of it: the file is opened without
// following a symlink (root would append to its target), and refused when it is not a
// regular file, is owned by another user, or may be written by group or others (a
// record could be forged in it). Its directory may not let others rename files in it
// unless it is sticky (as /tmp is): there only a file's owner renames or removes it.

// openTrail opens path for appending, creating it 0600 when missing.
func openTrail(path string) (*os.File, error) {
	if err := checkTrailDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		target, _ := os.Readlink(path)
		return nil, fmt.Errorf("%s is a symlink (to %s); name the file itself", path, target)
	}
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err == nil {
		err = checkTrailFile(path, info, os.Getuid())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkTrailDir(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if perm := info.Mode(); perm&0o022 != 0 && perm&fs.ModeSticky == 0 {
		return fmt.Errorf("%s has mode %04o: others could rename the trail's files; chmod go-w (or +t) %s", dir, perm.Perm(), dir)
	}
	return nil
}

// checkTrailFile returns why the file at name (info from Lstat or its open handle) is
// not the trail's own: written by uid alone.
func checkTrailFile(name string, info fs.FileInfo, uid int) error {
	if info.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink; the trail's files must be the files themselves", name)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s)", name, info.Mode().Type())
	}
	if owner := fileOwner(info); owner != uid {
		return fmt.Errorf("%s is owned by uid %d, not by the trail's writer (uid %d): another user may have planted it", name, owner, uid)
	}
	if perm := info.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s has mode %04o, writable by group or others: records could be forged in it; chmod go-w %s", name, perm, name)
	}
	return nil
}

func fileOwner(info fs.FileInfo) int {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return os.Getuid()
}
