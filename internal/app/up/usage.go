package up

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// groupUsage is the memory and CPU time of this process and every process under it
// (the embedded etcd is in this one; agents; their plugins): proportional set sizes
// summed, so pages they share count once, and user+system time so far. Two lines for
// the result table. pluginDepth is how far below this process the plugins run: 2 under
// agent processes, 1 when the agents run in this one.
func groupUsage(pluginDepth int) string {
	procs := descendants(os.Getpid())
	var total, self int64
	var cpu [3]time.Duration // this one, agents, plugins (and anything deeper)
	for _, p := range procs {
		kb := pssKB(p.pid)
		total += kb
		switch {
		case p.depth == 0:
			self = kb
			cpu[0] += p.cpu
		case p.depth < pluginDepth:
			cpu[1] += p.cpu
		default:
			cpu[2] += p.cpu
		}
	}
	return fmt.Sprintf("memory: %d processes (this one, agents, plugins), PSS %.0f MiB in all, %.0f MiB in this one (etcd included)\n"+
		"cpu: %.1f s in all: %.1f s this one (etcd included), %.1f s agents, %.1f s plugins",
		len(procs), float64(total)/1024, float64(self)/1024,
		(cpu[0] + cpu[1] + cpu[2]).Seconds(), cpu[0].Seconds(), cpu[1].Seconds(), cpu[2].Seconds())
}

// proc is a process under up: its depth below up (0 is up itself) and its CPU time.
type proc struct {
	pid, depth int
	cpu        time.Duration
}

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// descendants lists root and every process under it, from /proc.
func descendants(root int) []proc {
	children := map[int][]proc{}
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
		children[ppid] = append(children[ppid], proc{pid: pid})
	}
	out := []proc{{pid: root, cpu: cpu[root]}}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i].pid] {
			out = append(out, proc{pid: c.pid, depth: out[i].depth + 1, cpu: cpu[c.pid]})
		}
	}
	return out
}

// pssKB reads a process's proportional set size; 0 if it is gone.
func pssKB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}
