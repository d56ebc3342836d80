package main

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/internal/app/up"
	"github.com/tlsrelay/tlsrelay/plugins/builtin"
)

// BenchmarkUp times a whole `tlsrelay up` of the real binary from an empty directory:
// the embedded etcd and one agent process per unit start, every unit gets a key, CSR
// and certificate, and the proof (chains, one CA bundle, ring mutual TLS) runs.
//
//	go test -run '^$' -bench 'Up$' -benchtime 3x ./cmd/tlsrelay
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

// BenchmarkGroupOverEtcd: N units in one process sharing one plugin host (the cfssl
// plugin as a child process), each its own member of the relation on the embedded etcd,
// until every unit holds a certificate that verifies; then the ring proof. Reported:
// issuance (etcd start to the last certificate) and what the units read from etcd, per
// unit.
//
//	go test -run '^$' -bench GroupOverEtcd -benchtime 1x ./cmd/tlsrelay
func BenchmarkGroupOverEtcd(b *testing.B) {
	bin := testbinBuild(b)
	for _, units := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("units=%d", units), func(b *testing.B) {
			var issuance time.Duration
			var stats up.Stats
			for b.Loop() {
				cfg, err := config.Load("", builtin.Names())
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
				err = up.Run(ctx, up.Options{Config: cfg, Units: units, Dir: b.TempDir(), Parallel: 8,
					Out: io.Discard, Progress: io.Discard, Self: bin, InProcess: true, Stats: &stats})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				issuance += stats.Issuance
			}
			n := float64(b.N)
			b.ReportMetric(issuance.Seconds()/n, "issue-s")
			b.ReportMetric(float64(stats.EtcdBytesRead)/float64(units), "etcd-B/unit")
			b.ReportMetric(float64(stats.LeaderBytesRead), "leader-B")
			b.ReportMetric(float64(stats.FollowerBytesMean), "follower-B")
			b.ReportMetric(float64(stats.FollowerBytesMax), "follower-max-B")
			b.ReportMetric(float64(stats.FollowerEventsMean), "follower-events")
		})
	}
}
