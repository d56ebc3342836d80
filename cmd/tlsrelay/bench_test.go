package main

import (
	"fmt"
	"testing"
)

// BenchmarkUp times a whole `tlsrelay up` of the real binary from an empty directory:
// plugin processes start, every unit gets a key, CSR and certificate, and the proof
// (chains plus n*(n-1) mutual-TLS handshakes) runs.
//
//	go test -run '^$' -bench Up -benchtime 3x ./cmd/tlsrelay
func BenchmarkUp(b *testing.B) {
	for _, units := range []int{10, 100} {
		b.Run(fmt.Sprintf("units=%d", units), func(b *testing.B) {
			bin := testbinBuild(b)
			for b.Loop() {
				r := runBinary(b, bin, "up", "--units", fmt.Sprint(units), "--dir", b.TempDir())
				if r.code != 0 {
					b.Fatalf("up exited %d: %s", r.code, r.stderr)
				}
			}
		})
	}
}
