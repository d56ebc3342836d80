package etcd

import "time"

// SetLazyWake sets how late a leader's view reports a change that does not wake it at
// once, until the test ends.
func SetLazyWake(d time.Duration) (restore func()) {
	old := lazyWake
	lazyWake = d
	return func() { lazyWake = old }
}
