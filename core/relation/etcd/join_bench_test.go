package etcd_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
)

// BenchmarkJoin joins 1,000 units to an embedded etcd as `up` does (16 clients, 16 joins
// at a time on each), eligible to lead or not: what joining costs, the campaign included.
//
//	go test -run '^$' -bench Join -benchtime 1x ./core/relation/etcd
func BenchmarkJoin(b *testing.B) {
	const units, clients, perClient = 1000, 16, 16
	for _, eligible := range []bool{true, false} {
		b.Run(fmt.Sprintf("eligible=%v", eligible), func(b *testing.B) {
			srv, err := embedded.Start(embedded.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			stores := make([]*etcd.Store, clients)
			for i := range stores {
				if stores[i], err = etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint()}, Relation: "join",
					LeaseTTL: 10 * time.Second, Log: hclog.NewNullLogger()}); err != nil {
					b.Fatal(err)
				}
				defer stores[i].Close()
			}
			var joined time.Duration
			for b.Loop() {
				members := make([]relation.Member, units)
				slots := make(chan struct{}, clients*perClient)
				start := time.Now()
				var wg sync.WaitGroup
				for i := range units {
					wg.Go(func() {
						slots <- struct{}{}
						defer func() { <-slots }()
						m, err := stores[i%clients].Join(context.Background(), fmt.Sprintf("u/%d", i), relation.JoinOptions{LeaderEligible: eligible})
						if err != nil {
							b.Error(err)
							return
						}
						members[i] = m
					})
				}
				wg.Wait()
				joined += time.Since(start)
				for _, m := range members {
					if m != nil {
						wg.Go(func() { m.Leave(context.Background()) })
					}
				}
				wg.Wait()
			}
			b.ReportMetric(joined.Seconds()/float64(b.N), "join-s")
		})
	}
}
