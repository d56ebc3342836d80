package durable

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncFileSystem flushes the file system f is on: syncfs(2), which since Linux 5.8 also
// reports that file system's writeback errors.
var syncFileSystem = func(f *os.File) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := conn.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("syncfs: %w", serr)
	}
	return nil
}
