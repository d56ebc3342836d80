package backend

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// A host's plugin sockets live in a directory of its own under TMPDIR, named for the
// process: tlsrelay-plugins-<pid>-<random>. Close removes it; a process killed with -9
// cannot, so each host's first start sweeps the directories of processes that are gone.
const socketDirPrefix = "tlsrelay-plugins-"

var sweepOnce sync.Once

// socketDir makes this host's socket directory, after sweeping stale ones once per
// process.
func socketDir() (string, error) {
	sweepOnce.Do(func() { sweepSocketDirs(os.TempDir()) })
	return os.MkdirTemp("", fmt.Sprintf("%s%d-", socketDirPrefix, os.Getpid()))
}

// sweepSocketDirs removes the socket directories in dir whose process is gone and that
// belong to this user; it returns how many. A directory whose pid names a live process
// (or one another user's) is left alone.
func sweepSocketDirs(dir string) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	removed := 0
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), socketDirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || !processGone(pid) {
			continue
		}
		info, err := e.Info()
		if st, isUnix := info.Sys().(*syscall.Stat_t); err != nil || !isUnix || int(st.Uid) != os.Getuid() {
			continue
		}
		if os.RemoveAll(filepath.Join(dir, e.Name())) == nil {
			removed++
		}
	}
	return removed
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
