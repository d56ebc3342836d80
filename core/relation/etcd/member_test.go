package etcd

import (
	"context"
	"testing"
	"time"
)

// An election won while Join waits for the first read replaces the narrow follower
// and stops it unread. Join must wait for the follower that replaced it: waiting on the
// stopped one hung Join for ever, and with it the unit that had just become leader
// (elected, never publishing a CA: the CI failure of the RBAC cluster test).
func TestJoinWaitsForTheCurrentFollower(t *testing.T) {
	first := &follower{ready: make(chan struct{}), done: make(chan struct{})}
	m := &member{unit: "ctl/0", follower: first}
	go func() {
		time.Sleep(20 * time.Millisecond)
		wide := &follower{ready: make(chan struct{}), done: make(chan struct{})}
		m.mu.Lock()
		m.follower = wide // setFollower: the new one first, then the old one stops
		m.mu.Unlock()
		close(first.done)
		close(wide.ready)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.waitReady(ctx); err != nil {
		t.Fatalf("waitReady: %v", err)
	}
}
