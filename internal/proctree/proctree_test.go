package proctree

import (
	"os"
	"os/exec"
	"testing"
)

// A child of this process is found one level below it, and both have a resident set.
func TestDescendantsFindsAChild(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	procs := Descendants(os.Getpid())
	if procs[0].PID != os.Getpid() || procs[0].Depth != 0 {
		t.Fatalf("first %+v, want this process at depth 0", procs[0])
	}
	found := false
	for _, p := range procs {
		if p.PID == child.Process.Pid {
			found = p.Depth == 1
		}
	}
	if !found {
		t.Fatalf("the child %d is not at depth 1 in %+v", child.Process.Pid, procs)
	}
	for _, pid := range []int{os.Getpid(), child.Process.Pid} {
		if rss, peak := Memory(pid); rss <= 0 || peak < rss {
			t.Errorf("pid %d: rss %d, peak %d", pid, rss, peak)
		}
	}
	if PSSKB(os.Getpid()) <= 0 {
		t.Errorf("this process has no PSS")
	}
	if rss, _ := Memory(1 << 30); rss != 0 {
		t.Errorf("a process that does not exist has rss %d", rss)
	}
}
