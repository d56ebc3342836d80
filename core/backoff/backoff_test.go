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
	for round := 0; round < 20; round++ {
		for i, n := range nominal {
			n *= time.Millisecond
			d := b.Next()
			if lo, hi := time.Duration(float64(n)*(1-Jitter)), time.Duration(float64(n)*(1+Jitter)); d < lo || d > hi {
				t.Fatalf("wait %d = %s, want within [%s, %s]", i, d, lo, hi)
			}
			seen[d] = true
		}
		b.Reset()
	}
	if len(seen) < 20 {
		t.Fatalf("%d distinct waits in 120: no jitter", len(seen))
	}
}
