package up

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// groupMemory is the memory of this process and every process under it (the embedded
// etcd is in this one; agents, their plugins): their proportional set sizes summed, so
// pages they share count once. One line for the result table.
func groupMemory() string {
	pids := descendants(os.Getpid())
	var total, self int64
	for _, pid := range pids {
		kb := pssKB(pid)
		total += kb
		if pid == os.Getpid() {
			self = kb
		}
	}
	return fmt.Sprintf("memory: %d processes (this one, agents, plugins), PSS %.0f MiB in all, %.0f MiB in this one (etcd included)",
		len(pids), float64(total)/1024, float64(self)/1024)
}

// descendants lists root and every process under it, from /proc.
func descendants(root int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[end+1:])
		pid, err1 := strconv.Atoi(strings.Fields(s)[0])
		if len(fields) < 2 || err1 != nil {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
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
