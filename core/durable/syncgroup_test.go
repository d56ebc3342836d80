package durable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
)

// heldGroup returns a SyncGroup whose first round says it started (firstFlushing) and
// then waits until want more files are waiting for the next, so that the next round's
// size is known. It records each round's size and counts the syncfs calls, which go to
// syncfs (nil: the real one).
func heldGroup(t *testing.T, want int, syncfs func(*os.File) error) (g *SyncGroup, firstFlushing chan struct{}, rounds func() []int, syncfsCalls *atomic.Int32) {
	t.Helper()
	g = &SyncGroup{}
	firstFlushing = make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	syncfsCalls = new(atomic.Int32)
	if syncfs == nil {
		syncfs = syncFileSystem
	}
	g.syncfs = func(f *os.File) error {
		syncfsCalls.Add(1)
		return syncfs(f)
	}
	g.flushRound = func(files []*os.File) []error {
		mu.Lock()
		first := sizes == nil
		sizes = append(sizes, len(files))
		mu.Unlock()
		if first {
			close(firstFlushing)
			waitFor(t, func() bool {
				g.mu.Lock()
				defer g.mu.Unlock()
				return g.next != nil && len(g.next.files) == want
			})
		}
		return g.syncAll(files)
	}
	return g, firstFlushing, func() []int { mu.Lock(); defer mu.Unlock(); return append([]int(nil), sizes...) }, syncfsCalls
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Error("timed out waiting for the writers to queue")
			return
		}
	}
}

// writeConcurrently writes n files in dir through w, the first alone and the rest at
// once when its flush has begun, and returns each write's error.
func writeConcurrently(dir string, n int, w atomicfile.Writer, firstFlushing <-chan struct{}) []error {
	errs := make([]error, n)
	write := func(i int) {
		errs[i] = w.Write(filepath.Join(dir, fmt.Sprint("f", i)), []byte(fmt.Sprint("data ", i)), 0o644)
	}
	var first, rest sync.WaitGroup
	first.Add(1)
	go func() { defer first.Done(); write(0) }()
	<-firstFlushing
	for i := 1; i < n; i++ {
		rest.Add(1)
		go func() { defer rest.Done(); write(i) }()
	}
	first.Wait()
	rest.Wait()
	return errs
}

func TestSyncGroupFlushesConcurrentWritersTogether(t *testing.T) {
	const n = 24
	dir := t.TempDir()
	g, firstFlushing, rounds, syncfsCalls := heldGroup(t, n-1, nil)
	for i, err := range writeConcurrently(dir, n, atomicfile.Writer{Sync: g.Sync}, firstFlushing) {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// The first file flushed alone (an fsync); the other 23 waited and shared one syncfs.
	if got := rounds(); len(got) != 2 || got[0] != 1 || got[1] != n-1 {
		t.Fatalf("rounds of %v files, want [1 %d]", got, n-1)
	}
	if got := syncfsCalls.Load(); got != 1 {
		t.Fatalf("%d syncfs calls, want 1", got)
	}
	for i := range n {
		if got, err := os.ReadFile(filepath.Join(dir, fmt.Sprint("f", i))); err != nil || string(got) != fmt.Sprint("data ", i) {
			t.Fatalf("f%d: %q, %v", i, got, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != n {
		t.Fatalf("%d entries, want %d (temporary files left?)", len(entries), n)
	}
}

func TestSyncGroupFailsTheWritesOfAFailedFlush(t *testing.T) {
	const n = 6
	dir := t.TempDir()
	injected := errors.New("injected writeback error")
	g, firstFlushing, _, _ := heldGroup(t, n-1, func(*os.File) error { return injected })
	errs := writeConcurrently(dir, n, atomicfile.Writer{Sync: g.Sync}, firstFlushing)
	if errs[0] != nil {
		t.Fatalf("the first write, fsynced alone: %v", errs[0])
	}
	for i, err := range errs[1:] {
		path := filepath.Join(dir, fmt.Sprint("f", i+1))
		if !errors.Is(err, injected) || !strings.Contains(err.Error(), path) {
			t.Fatalf("write %d: %v, want the injected error naming %s", i+1, err, path)
		}
	}
	// A failed write leaves neither the file nor its temporary.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 || entries[0].Name() != "f0" {
		t.Fatalf("left in the directory: %v, want only f0", entries)
	}
}

func TestSyncGroupFlushesEachFileSystemOnItsOwn(t *testing.T) {
	disk, other := t.TempDir(), otherFileSystem(t)
	var files []*os.File
	for i, dir := range []string{disk, other, disk, other} {
		f, err := os.Create(filepath.Join(dir, fmt.Sprint("f", i)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	var flushed []string
	g := &SyncGroup{syncfs: func(f *os.File) error {
		flushed = append(flushed, filepath.Dir(f.Name()))
		return nil
	}}
	for i, err := range g.syncAll(files) {
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
	}
	// One syncfs for each file system: one would not flush the other.
	slices.Sort(flushed)
	if want := []string{disk, other}; !slices.Equal(flushed, want) && !slices.Equal(flushed, []string{other, disk}) {
		t.Fatalf("syncfs of %v, want one each of %v", flushed, want)
	}
}

// otherFileSystem returns a directory on another file system than t.TempDir's.
func otherFileSystem(t *testing.T) string {
	t.Helper()
	base, err := os.Stat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	baseDev, _ := deviceOfInfo(base)
	for _, candidate := range []string{"/dev/shm", "/run", "/var/tmp", "/tmp"} {
		info, err := os.Stat(candidate)
		if err != nil {
			continue
		}
		if dev, ok := deviceOfInfo(info); !ok || dev == baseDev {
			continue
		}
		dir, err := os.MkdirTemp(candidate, "atomicfile-test-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	t.Fatal("no writable directory on a second file system (tried /dev/shm, /run, /var/tmp, /tmp)")
	return ""
}
