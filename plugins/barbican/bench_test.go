package barbican

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// BenchmarkFetchSecret fetches one certificate container (GET container, then the
// certificate, key and intermediates payloads, then the checks) from a real Barbican,
// with the backend in this process and as `tlsrelay plugin serve barbican`.
//
//	go test -run '^$' -bench FetchSecret -benchtime 200x -count 3 ./plugins/barbican
func BenchmarkFetchSecret(b *testing.B) {
	server := testservers.StartBarbican(b)
	m := testservers.NewMaterial(b)
	ref := server.As(b, "demo").CertificateContainer("bench", m.Cert, m.Key, m.Inter)
	cfg, _ := json.Marshal(map[string]any{"auth": map[string]any{"type": "noauth", "endpoint": server.URL, "project_id": "demo"}})
	starters := []struct {
		name  string
		start plugintest.Starter
	}{
		{"in-process", func(string) (sdk.Backend, func(), error) {
			backend := New(nil)
			return backend, func() {}, backend.Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: cfg})
		}},
		{"plugin", plugintest.Command(cfg, testbin.Build(b, testbin.Tlsrelay), "plugin", "serve", "barbican")},
	}
	for _, s := range starters {
		backend, stop, err := s.start(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := backend.FetchSecret(context.Background(), ref); err != nil {
					b.Fatal(err)
				}
			}
		})
		stop()
	}
}
