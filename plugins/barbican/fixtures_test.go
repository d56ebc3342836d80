package barbican

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// noauth returns the backend configured for the unauthenticated Barbican at url.
func noauth(t *testing.T, url, project string, extra map[string]any) *Backend {
	t.Helper()
	cfg := map[string]any{"auth": map[string]any{"type": "noauth", "endpoint": url, "project_id": project}}
	for k, v := range extra {
		cfg[k] = v
	}
	raw, _ := json.Marshal(cfg)
	b := New(nil)
	if err := b.Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: raw}); err != nil {
		t.Fatal(err)
	}
	return b
}
