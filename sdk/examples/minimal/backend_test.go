package minimal

import (
	"os/exec"
	"path/filepath"
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
