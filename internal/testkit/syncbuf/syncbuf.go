// Package syncbuf is a buffer that one goroutine (a child process's output, a logger)
// writes while another reads it, for tests.
package syncbuf

import (
	"strings"
	"sync"
)

// Buffer collects writes; String reads what has come so far. The zero value is ready.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
