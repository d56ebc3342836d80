package pluginhost

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"sync"
)

// BaseEnv names what every plugin binary gets from its host's environment; anything
// more (credentials, a token's config) only when its config declares it.
var BaseEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// Environ is the environment a plugin binary runs with: BaseEnv and the names declared,
// as this process has them.
func Environ(declared []string) []string {
	var env []string
	for _, name := range append(slices.Clone(BaseEnv), declared...) {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// panicLines is how much of a panic (its message, the start of the goroutine's stack) a
// Tail keeps besides the last lines.
const panicLines = 8

// Tail keeps the last lines of a plugin's stderr, and the start of a panic or fatal
// error it printed, whose message a long stack would otherwise push out. Safe for
// concurrent use.
type Tail struct {
	Max int // lines kept

	mu      sync.Mutex
	lines   []string
	partial []byte
	panic   []string // from the first "panic: " or "fatal error: " line on
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		line := string(t.partial[:i])
		t.partial = t.partial[i+1:]
		switch {
		case t.panic == nil && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")):
			t.panic = []string{line}
		case t.panic != nil && len(t.panic) < panicLines:
			t.panic = append(t.panic, line)
		}
		t.lines = append(t.lines, line)
		if len(t.lines) > t.Max {
			t.lines = t.lines[len(t.lines)-t.Max:]
		}
	}
	return len(p), nil
}

// String is the panic's start, if the plugin panicked and it is no longer among the
// last lines, then the last lines.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	last := append(slices.Clone(t.lines), string(t.partial))
	if t.panic != nil && !slices.Contains(t.lines, t.panic[0]) {
		last = append(append(slices.Clone(t.panic), "..."), last...)
	}
	return strings.TrimRight(strings.Join(last, "\n"), "\n")
}

// Panic is the plugin's panic or fatal error message line, "" if it printed none.
func (t *Tail) Panic() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.panic == nil {
		return ""
	}
	return t.panic[0]
}
