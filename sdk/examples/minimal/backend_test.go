package minimal

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

// The backend served in this process, over the real go-plugin gRPC path.
func TestConformanceInProcess(t *testing.T) {
	plugintest.Run(t, plugintest.InProcess(func() sdk.Backend { return &minimal{} }, nil), plugintest.Options{})
}

// The built binary, launched as a child process through go-plugin.
func TestConformanceBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "minimal")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tlsrelay-plugin-minimal").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	plugintest.Run(t, plugintest.Command(nil, bin), plugintest.Options{})
}

// The example stays small: under 100 lines that are neither blank nor comments.
func TestMinimalIsUnder100Lines(t *testing.T) {
	n := 0
	for _, f := range []string{"minimal.go", "cmd/tlsrelay-plugin-minimal/main.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "//") {
				n++
			}
		}
	}
	if n >= 100 {
		t.Fatalf("the minimal example has %d lines of code; keep it under 100", n)
	}
	t.Logf("%d lines of code", n)
}
