package main

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

// The custodian passes the kit as a child process with the host's environment rules
// (its custody reaches it only because it is declared), its GenerateCA proved by the
// kit's own check.
func TestConformance(t *testing.T) {
	bin := testbin.Build(t, testbin.Custodian)
	t.Setenv("CUSTODIAN_CUSTODY", "shared")
	t.Setenv("CUSTODIAN_GENERATE", "true")
	cfg := fmt.Appendf(nil, `{"ca_dir": %q, "custody": "shared", "generate": true}`, filepath.Join(t.TempDir(), "ca"))
	results, err := plugintest.Verify(plugintest.CommandEnv([]string{"CUSTODIAN_CUSTODY", "CUSTODIAN_GENERATE"}, cfg, bin), plugintest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		switch {
		case r.Err != nil:
			t.Errorf("%s: %v", r.Check, r.Err)
		case r.Check == "GenerateCA makes the next CA, which signs from then on, across restarts" && !r.Proved():
			t.Errorf("%s not proved: %s%s", r.Check, r.Skipped, r.NotClaimed)
		}
	}
	t.Log(plugintest.Summary(results))
}
