// Package backoff spaces out the attempts of a retry loop: each wait doubles up to a
// bound, with jitter, so that units failing for one cause (etcd gone, a disk full) do
// not retry in step, and a loop can say when its next attempt really is.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter is the fraction of a wait by which it varies either way.
const Jitter = 0.2

// Backoff is a retry loop's state. The zero value is not usable; make one with New.
type Backoff struct {
	min, max, current time.Duration
}

// New returns a Backoff whose first wait is about min and whose waits grow to about max.
func New(min, max time.Duration) *Backoff { return &Backoff{min: min, max: max, current: min} }

// Next returns the wait before the next attempt and doubles the one after, up to max.
func (b *Backoff) Next() time.Duration {
	d := b.current
	b.current = min(2*b.current, b.max)
	return time.Duration(float64(d) * (1 - Jitter + 2*Jitter*rand.Float64()))
}

// Reset starts again from min, after an attempt that succeeded.
func (b *Backoff) Reset() { b.current = b.min }
