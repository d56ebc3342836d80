package builtin

import (
	"os"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testbin"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// TestConformance runs the conformance kit against every built-in backend, served in
// this process and as `tlsrelay plugin serve NAME` child processes.
func TestConformance(t *testing.T) {
	tlsrelay := testbin.Build(t, testbin.Tlsrelay)
	for _, name := range Names() {
		t.Run(name+"/in-process", func(t *testing.T) {
			t.Parallel()
			plugintest.Run(t, plugintest.InProcess(func() sdk.Backend { return Backends[name](nil) }, nil), plugintest.Options{})
		})
		t.Run(name+"/child-process", func(t *testing.T) {
			t.Parallel()
			plugintest.Run(t, plugintest.Command(nil, tlsrelay, "plugin", "serve", name), plugintest.Options{})
		})
	}
}

// TestConformanceStandaloneBinary runs the kit against the cfssl backend built as its
// own plugin binary, the way a third party ships one.
func TestConformanceStandaloneBinary(t *testing.T) {
	plugintest.Run(t, plugintest.Command(nil, testbin.Build(t, testbin.CfsslPlugin)), plugintest.Options{})
}
