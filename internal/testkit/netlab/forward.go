package netlab

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Dial connects to addr from inside host i's namespace, from the test's own process: the
// socket is made on a thread moved into that namespace for the while, and keeps it.
func (l *Lab) Dial(i int, addr string) (net.Conn, error) {
	type dialed struct {
		conn net.Conn
		err  error
	}
	done := make(chan dialed, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- dialed{err: fmt.Errorf("netlab: this thread's namespace: %w", err)}
			return
		}
		defer home.Close()
		ns, err := os.Open("/var/run/netns/" + l.Hosts[i-1].NS)
		if err != nil {
			done <- dialed{err: fmt.Errorf("netlab: host %d's namespace: %w", i, err)}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- dialed{err: fmt.Errorf("netlab: enter host %d's namespace: %w", i, err)}
			return
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		done <- dialed{conn, err}
		// Back home before the thread serves other goroutines. Not ending the thread
		// instead matters: a child a test started from it (Pdeathsig) would be killed.
		// If going back fails, the thread stays locked and ends with this goroutine.
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	d := <-done
	return d.conn, d.err
}

// Forward listens on 127.0.0.1 in the test's own namespace and carries each connection
// to addr, dialled from inside host i, until the test ends; it returns where it listens.
// A connection it cannot carry is closed, as a refused one would be.
func (l *Lab) Forward(i int, addr string) string {
	l.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.t.Fatalf("netlab: listen for a forward to host %d: %v", i, err)
	}
	var mu sync.Mutex
	open, closed := map[net.Conn]bool{}, false
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case add && closed:
			c.Close()
		case add:
			open[c] = true
		default:
			delete(open, c)
		}
	}
	var wg sync.WaitGroup
	l.t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer client.Close()
				server, err := l.Dial(i, addr)
				if err != nil {
					return
				}
				defer server.Close()
				track(client, true)
				track(server, true)
				defer track(client, false)
				defer track(server, false)
				copied := make(chan struct{}, 2)
				go func() { io.Copy(server, client); copied <- struct{}{} }()
				go func() { io.Copy(client, server); copied <- struct{}{} }()
				<-copied // one side ended: end both, as the deferred closes do
			}()
		}
	}()
	return ln.Addr().String()
}
