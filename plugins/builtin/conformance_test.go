package builtin

import (
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// conformanceConfig is each backend's config for the kit; nil: its defaults. The kit
// checks what a backend claims; barbican claims only secrets, whose fetches need a real
// Barbican and are tested in plugins/barbican, so here it meets the kit's contract checks
// (Info, Unimplemented for CSRs, signing and CA).
var conformanceConfig = map[string][]byte{
	"barbican": []byte(`{"auth":{"type":"noauth","endpoint":"http://127.0.0.1:9","project_id":"kit"}}`),
}

// TestConformance runs the conformance kit against every built-in backend, served in
// this process and as `tlsrelay plugin serve NAME` child processes.
func TestConformance(t *testing.T) {
	tlsrelay := testbin.Build(t, testbin.Tlsrelay)
	for _, name := range Names() {
		cfg := conformanceConfig[name]
		t.Run(name+"/in-process", func(t *testing.T) {
			t.Parallel()
			plugintest.Run(t, plugintest.InProcess(func() sdk.Backend { return Backends[name](nil) }, cfg), plugintest.Options{})
		})
		t.Run(name+"/child-process", func(t *testing.T) {
			t.Parallel()
			plugintest.Run(t, plugintest.Command(cfg, tlsrelay, "plugin", "serve", name), plugintest.Options{})
		})
	}
}

// TestConformanceStandaloneBinary runs the kit against the cfssl backend built as its
// own plugin binary, the way a third party ships one.
func TestConformanceStandaloneBinary(t *testing.T) {
	plugintest.Run(t, plugintest.Command(nil, testbin.Build(t, testbin.CfsslPlugin)), plugintest.Options{})
}
