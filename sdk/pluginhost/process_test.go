package pluginhost

import (
	"fmt"
	"strings"
	"testing"
)

func TestTailKeepsThePanicAndTheLastLines(t *testing.T) {
	tests := []struct {
		name      string
		written   string
		want      []string
		notWanted []string
		panic     string
	}{
		{"a few lines", "one\ntwo\nthree", []string{"one\ntwo\nthree"}, nil, ""},
		{"more lines than kept", lines("log", 30), []string{"log 29", "log 10"}, []string{"log 9\n"}, ""},
		{"a panic with a deep stack", "log before\npanic: boom\n\ngoroutine 7 [running]:\n" + lines("frame", 40),
			[]string{"panic: boom\n\ngoroutine 7 [running]:", "...", "frame 39"}, []string{"log before"}, "panic: boom"},
		{"a fatal error", "fatal error: concurrent map writes\n", []string{"fatal error: concurrent map writes"}, nil, "fatal error: concurrent map writes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tail := &Tail{Max: 20}
			for _, chunk := range strings.SplitAfter(tt.written, "o") { // lines arrive in pieces
				fmt.Fprint(tail, chunk)
			}
			got := tail.String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("tail lacks %q:\n%s", w, got)
				}
			}
			for _, n := range tt.notWanted {
				if strings.Contains(got, n) {
					t.Errorf("tail keeps %q:\n%s", n, got)
				}
			}
			if tail.Panic() != tt.panic {
				t.Errorf("Panic() = %q, want %q", tail.Panic(), tt.panic)
			}
		})
	}
}

func TestEnvironIsTheBaseAndWhatIsDeclared(t *testing.T) {
	t.Setenv("PATH", "/bin")
	t.Setenv("SOFTHSM2_CONF", "/etc/softhsm.conf")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "never")
	env := strings.Join(Environ([]string{"SOFTHSM2_CONF"}), "\n")
	for _, want := range []string{"PATH=/bin", "SOFTHSM2_CONF=/etc/softhsm.conf"} {
		if !strings.Contains(env, want) {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	if strings.Contains(env, "AWS_SECRET") {
		t.Errorf("an undeclared variable reached the plugin:\n%s", env)
	}
}

func lines(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s %d\n", prefix, i)
	}
	return b.String()
}
