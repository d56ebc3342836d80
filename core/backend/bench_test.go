package backend

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/internal/testbin"
	"github.com/tlsrelay/tlsrelay/plugins/cfssl"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// BenchmarkSignCSR compares one backend's SignCSR called in this process with the same
// backend as a plugin child process over go-plugin gRPC (AutoMTLS), on the same CA and
// the same CSRs. The ratio of the two is the cost of the process boundary.
//
//	go test -run '^$' -bench SignCSR -benchtime 2000x ./core/backend
func BenchmarkSignCSR(b *testing.B) {
	ctx := context.Background()
	stateDir := b.TempDir()
	inProcess := cfssl.New(nil)
	if err := inProcess.Configure(ctx, sdk.ConfigureRequest{StateDir: filepath.Join(stateDir, "cfssl")}); err != nil {
		b.Fatal(err)
	}
	host, err := New(Options{
		Self:     testbin.Build(b, testbin.Tlsrelay),
		Plugins:  map[string]config.Plugin{"cfssl": {Builtin: true}},
		Roles:    config.Roles{CSR: "cfssl", Signer: "cfssl"},
		StateDir: stateDir,
		Logger:   hclog.NewNullLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	plugin, err := host.For(ctx, config.RoleSigner)
	if err != nil {
		b.Fatal(err)
	}
	csrs := makeCSRs(b, inProcess, 64)
	caIn, _ := inProcess.CA(ctx)
	caOut, _ := plugin.CA(ctx)
	if string(caIn.BundlePEM) != string(caOut.BundlePEM) {
		b.Fatal("in-process and plugin backends do not share the CA")
	}
	for _, bc := range []struct {
		name    string
		backend sdk.Backend
	}{{"in-process", inProcess}, {"plugin", plugin}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				_, err := bc.backend.SignCSR(ctx, sdk.SignRequest{CSRPEM: csrs[i%len(csrs)], Profile: sdk.ProfilePeer, Unit: "bench/0"})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func makeCSRs(b *testing.B, backend sdk.Backend, n int) [][]byte {
	b.Helper()
	out := make([][]byte, n)
	for i := range out {
		csr, err := backend.CreateCSR(context.Background(), sdk.CSRRequest{
			Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: fmt.Sprintf("bench/%d", i),
			SANs: []string{fmt.Sprintf("bench-%d", i), "127.0.0.1"},
		})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = csr.CSRPEM
	}
	return out
}
