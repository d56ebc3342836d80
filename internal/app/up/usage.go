package up

import (
	"fmt"
	"os"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/proctree"
)

// groupUsage is the memory and CPU time of this process and every process under it
// (the embedded etcd is in this one; agents; their plugins): proportional set sizes
// summed, so pages they share count once, and user+system time so far. Two lines for
// the result table. pluginDepth is how far below this process the plugins run: 2 under
// agent processes, 1 when the agents run in this one.
func groupUsage(pluginDepth int) string {
	procs := proctree.Descendants(os.Getpid())
	var total, self int64
	var cpu [3]time.Duration // this one, agents, plugins (and anything deeper)
	for _, p := range procs {
		kb := proctree.PSSKB(p.PID)
		total += kb
		switch {
		case p.Depth == 0:
			self = kb
			cpu[0] += p.CPU
		case p.Depth < pluginDepth:
			cpu[1] += p.CPU
		default:
			cpu[2] += p.CPU
		}
	}
	return fmt.Sprintf("memory: %d processes (this one, agents, plugins), PSS %.0f MiB in all, %.0f MiB in this one (etcd included)\n"+
		"cpu: %.1f s in all: %.1f s this one (etcd included), %.1f s agents, %.1f s plugins",
		len(procs), float64(total)/1024, float64(self)/1024,
		(cpu[0] + cpu[1] + cpu[2]).Seconds(), cpu[0].Seconds(), cpu[1].Seconds(), cpu[2].Seconds())
}
