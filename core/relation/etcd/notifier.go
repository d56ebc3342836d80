package etcd

import "sync"

// notifier hands out a channel that is closed at the next change.
type notifier struct {
	mu      sync.Mutex
	changed chan struct{}
}

func (n *notifier) current() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.changed == nil {
		n.changed = make(chan struct{})
	}
	return n.changed
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.changed != nil {
		close(n.changed)
	}
	n.changed = make(chan struct{})
}
