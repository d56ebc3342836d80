package pkcs11_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

// BenchmarkSigners signs the same CSRs with the pkcs11 plugin on a SoftHSM2 token and
// with the cfssl plugin (its CA key in a file), both child processes, one CSR a call
// and in batches of 64 (SignCSRs). SoftHSM2 is software: this measures what the PKCS#11
// path costs (sessions, the library, the token's object store), not an HSM's signing.
//
//	go test -run '^$' -bench Signers -count 5 ./plugins/pkcs11
func BenchmarkSigners(b *testing.B) {
	ctx := context.Background()
	csrs := make([]sdk.SignRequest, 64)
	for i := range csrs {
		csr, err := certutil.NewCSR(sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256},
			CommonName: fmt.Sprintf("bench/%d", i), SANs: []string{fmt.Sprintf("bench-%d", i), "127.0.0.1"}})
		if err != nil {
			b.Fatal(err)
		}
		csrs[i] = sdk.SignRequest{CSRPEM: csr.CSRPEM, Profile: sdk.ProfilePeer, Unit: fmt.Sprintf("bench/%d", i)}
	}
	signers := []struct {
		name  string
		start plugintest.Starter
	}{
		{"pkcs11-softhsm", plugintest.CommandEnv([]string{"SOFTHSM2_CONF"}, benchToken(b), testbin.Build(b, testbin.Pkcs11Plugin))},
		{"cfssl", plugintest.Command(nil, testbin.Build(b, testbin.CfsslPlugin))},
	}
	for _, s := range signers {
		backend, stop, err := s.start(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(stop)
		if _, err := backend.CA(ctx); err != nil {
			b.Fatal(err)
		}
		b.Run(s.name+"/one", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := backend.SignCSR(ctx, csrs[i%len(csrs)]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "csr/s")
		})
		b.Run(s.name+"/batch64", func(b *testing.B) {
			for b.Loop() {
				results, err := sdk.SignCSRs(ctx, backend, csrs)
				if err != nil || results[0].Err != nil {
					b.Fatal(err, results[0].Err)
				}
			}
			b.ReportMetric(float64(b.N*len(csrs))/b.Elapsed().Seconds(), "csr/s")
		})
	}
}

func benchToken(b *testing.B) []byte {
	label := fmt.Sprintf("bench-%d", b.N)
	pinFile, err := hsm.InitToken(label, "1234")
	if err != nil {
		b.Fatal(err)
	}
	return fmt.Appendf(nil, `{"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": %q, "pin_file": %q}`, label, pinFile)
}
