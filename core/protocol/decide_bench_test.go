package protocol

import (
	"fmt"
	"testing"
)

// A leader's decision over a settled group: every unit's CSR and certificate checked
// again, with what the leader keeps parsed warm (the steady state of a leader) and with
// nothing kept (what each decision would cost without it).
func BenchmarkDecideLeader(b *testing.B) {
	for _, units := range []int{100, 1000} {
		v := leaderView(b, units)
		for _, kept := range []bool{true, false} {
			b.Run(fmt.Sprintf("units=%d/parsed=%v", units, kept), func(b *testing.B) {
				v := v
				if kept {
					v.Parsed = NewParsed()
					Decide(v)
				}
				b.ReportAllocs()
				for b.Loop() {
					Decide(v)
				}
			})
		}
	}
}
