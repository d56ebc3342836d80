package durable

import (
	"os"
	"sync"
	"syscall"
)

// A SyncGroup makes the files of concurrent writers durable together, as a database
// commits a group of transactions with one flush. While one round of flushing runs, the
// files that arrive wait for the next, and that round flushes them with one syncfs(2)
// per file system instead of an fsync each. A file alone in its round is fsynced, as it
// would be without a group.
//
// Meant for a process that writes many small files at once, such as the units of one
// agent process: on the disk this was measured on, an fsync costs more CPU than
// writing the file. A syncfs also writes back whatever else is dirty on its file system,
// so writers on a file system another program fills with writes wait for those too.
// Where syncfs is not available every file is fsynced.
//
// The zero SyncGroup is ready to use; pass its Sync as a Writer's.
type SyncGroup struct {
	mu       sync.Mutex
	flushing bool   // a goroutine is flushing rounds
	next     *round // the files waiting for the round after the running one

	// Replaced in tests: what flushes a round, and syncfs(2).
	flushRound func([]*os.File) []error
	syncfs     func(*os.File) error
}

// round is the files one flush makes durable, and what came of each.
type round struct {
	files []*os.File
	errs  []error
	done  chan struct{}
}

// Sync returns once f's data is durable: after the flush of a round that began after
// f joined it.
func (g *SyncGroup) Sync(f *os.File) error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &round{done: make(chan struct{})}
	}
	r, i := g.next, len(g.next.files)
	r.files = append(r.files, f)
	if !g.flushing {
		g.flushing = true
		go g.flush()
	}
	g.mu.Unlock()
	<-r.done
	return r.errs[i]
}

// flush flushes rounds until none is waiting.
func (g *SyncGroup) flush() {
	for {
		g.mu.Lock()
		r := g.next
		g.next = nil
		if r == nil {
			g.flushing = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		flushRound := g.flushRound
		if flushRound == nil {
			flushRound = g.syncAll
		}
		r.errs = flushRound(r.files)
		close(r.done)
	}
}

// syncAll makes files durable: an fsync for a file alone on its file system, one
// syncfs for the files of a file system that has several. It returns each file's error.
func (g *SyncGroup) syncAll(files []*os.File) []error {
	errs := make([]error, len(files))
	byDevice := map[uint64][]int{}
	syncfs := g.syncfs
	if syncfs == nil {
		syncfs = syncFileSystem // nil where there is none
	}
	for i, f := range files {
		if dev, ok := deviceOf(f); ok && syncfs != nil {
			byDevice[dev] = append(byDevice[dev], i)
		} else {
			errs[i] = f.Sync()
		}
	}
	for _, same := range byDevice {
		var err error
		if len(same) == 1 {
			err = files[same[0]].Sync()
		} else {
			err = syncfs(files[same[0]])
		}
		for _, i := range same {
			errs[i] = err
		}
	}
	return errs
}

// deviceOf returns the device of f's file system.
func deviceOf(f *os.File) (uint64, bool) {
	info, err := f.Stat()
	if err != nil {
		return 0, false
	}
	return deviceOfInfo(info)
}

func deviceOfInfo(info os.FileInfo) (uint64, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Dev), true
}
