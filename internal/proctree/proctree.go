// Package proctree reads a process and every process under it from /proc: their CPU
// time and memory, for `tlsrelay up`'s usage lines and the scale benchmark's counts.
package proctree

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Proc is a process under a root: its depth below the root (0 is the root) and its
// CPU time (user and system) so far.
type Proc struct {
	PID, Depth int
	CPU        time.Duration
}

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// Descendants lists root and every process under it, root first.
func Descendants(root int) []Proc {
	children := map[int][]Proc{}
	cpu := map[int]time.Duration{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ... utime stime: comm may hold spaces and parentheses.
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[end+1:])
		pid, err1 := strconv.Atoi(strings.Fields(s)[0])
		if len(fields) < 13 || err1 != nil {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		cpu[pid] = time.Duration(utime+stime) * clockTick
		children[ppid] = append(children[ppid], Proc{PID: pid})
	}
	out := []Proc{{PID: root, CPU: cpu[root]}}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i].PID] {
			out = append(out, Proc{PID: c.PID, Depth: out[i].Depth + 1, CPU: cpu[c.PID]})
		}
	}
	return out
}

// PSSKB is a process's proportional set size in KiB (smaps_rollup); 0 if it is gone.
func PSSKB(pid int) int64 {
	return field(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss")[0]
}

// Memory is a process's resident set now and at its peak (VmRSS, VmHWM), in bytes; 0
// if it is gone.
func Memory(pid int) (rss, peak int64) {
	kb := field(fmt.Sprintf("/proc/%d/status", pid), "VmRSS", "VmHWM")
	return kb[0] << 10, kb[1] << 10
}

// field reads the "Name:  N kB" lines of a /proc file, in the order of names.
func field(path string, names ...string) []int64 {
	out := make([]int64, len(names))
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for i, n := range names {
			if name == n {
				out[i], _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			}
		}
	}
	return out
}
