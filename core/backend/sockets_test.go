package backend

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The socket directories of processes that are gone (agents killed with -9) are swept;
// this process's, and names that are not such directories, are left.
func TestStaleSocketDirsAreSwept(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(p, "sock"), 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gone := mk(fmt.Sprintf("%s%d-123", socketDirPrefix, dead.Process.Pid))
	live := mk(fmt.Sprintf("%s%d-456", socketDirPrefix, os.Getpid()))
	old := mk(socketDirPrefix + "789") // the form before pids were in the name
	other := mk("unrelated-1-2")
	if n := sweepSocketDirs(dir); n != 1 {
		t.Fatalf("swept %d directories, want 1", n)
	}
	if _, err := os.Stat(gone); err == nil {
		t.Error("the directory of a process that is gone is still there")
	}
	for _, kept := range []string{live, old, other} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s was removed", kept)
		}
	}
}
