// Package memo remembers the results of pure, costly checks by the SHA-256 of their
// input: a leader re-deciding for a group of N units would otherwise parse and verify
// every CSR and certificate again at every decision, N² signature checks in all.
// A Memo is bounded (it forgets everything when full, which costs one recomputation
// per entry) and safe for concurrent use (units of one process share it).
package memo

import (
	"crypto/sha256"
	"sync"
)

// Key is what a result is remembered by.
type Key = [sha256.Size]byte

// KeyOf hashes the parts of an input, each length-prefixed so that parts cannot run
// into one another.
func KeyOf(parts ...[]byte) Key {
	h := sha256.New()
	for _, p := range parts {
		n := len(p)
		h.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		h.Write(p)
	}
	var k Key
	h.Sum(k[:0])
	return k
}

// Memo maps keys to results.
type Memo[V any] struct {
	max int
	mu  sync.Mutex
	m   map[Key]V
}

// New returns a Memo that holds at most max results.
func New[V any](max int) *Memo[V] { return &Memo[V]{max: max, m: map[Key]V{}} }

// Get returns the result remembered for k. A nil Memo remembers nothing.
func (c *Memo[V]) Get(k Key) (V, bool) {
	if c == nil {
		var zero V
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

// Put remembers v for k.
func (c *Memo[V]) Put(k Key, v V) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
}

// Remember returns the result remembered for k, or computes it and, when compute
// succeeds, remembers it (failures are computed again: their errors may name the
// caller's context).
func (c *Memo[V]) Remember(k Key, compute func() (V, error)) (V, error) {
	if v, ok := c.Get(k); ok {
		return v, nil
	}
	v, err := compute()
	if err == nil {
		c.Put(k, v)
	}
	return v, err
}
