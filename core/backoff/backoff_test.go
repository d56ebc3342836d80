package backoff

import (
	"testing"
	"time"
)

// Waits double up to the bound, each within Jitter of its nominal value, and are not all
// the same (jitter); Reset starts again.
func TestBackoff(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	nominal := []time.Duration{100, 200, 400, 800, 1000, 1000}
	seen := map[time.Duration]bool{}
	lowest, highest := 2.0, 0.0 // of wait / nominal
	for round := 0; round < 20; round++ {
		for i, n := range nominal {
			n *= time.Millisecond
			d := b.Next()
			if lo, hi := time.Duration(float64(n)*(1-Jitter)), time.Duration(float64(n)*(1+Jitter)); d < lo || d > hi {
				t.Fatalf("wait %d = %s, want within [%s, %s]", i, d, lo, hi)
			}
			seen[d] = true
			r := float64(d) / float64(n)
			lowest, highest = min(lowest, r), max(highest, r)
		}
		b.Reset()
	}
	if len(seen) < 20 {
		t.Fatalf("%d distinct waits in 120: no jitter", len(seen))
	}
	// The jitter spreads both ways, over most of its range: a uniform draw misses the
	// outer quarter of either side in all 120 waits once in about 10^15 runs. (A jitter
	// of half the width, one-sided, lived through the bounds check above.)
	if lowest > 1-Jitter/2 || highest < 1+Jitter/2 {
		t.Fatalf("waits spread from %.3f to %.3f of nominal, want beyond %.2f and %.2f", lowest, highest, 1-Jitter/2, 1+Jitter/2)
	}
}
