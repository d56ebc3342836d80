package etcd

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
)

// BenchmarkLoadPages reads a relation of TLSRELAY_BENCH_LOAD_UNITS units (default
// 20,000; some 10 keys each, as a signed unit's bag and leader data) the way a new
// leader does, at two page sizes in turn, so the two are timed side by side on one etcd:
// etcd counts the rest of the range on every page, so small pages cost more the larger
// the group.
//
//	TLSRELAY_BENCH_LOAD_UNITS=100000 go test -run '^$' -bench LoadPages -benchtime 4x ./core/relation/etcd
func BenchmarkLoadPages(b *testing.B) {
	units := 20000
	if n, err := strconv.Atoi(os.Getenv("TLSRELAY_BENCH_LOAD_UNITS")); err == nil && n > 0 {
		units = n
	}
	srv, err := embedded.Start(embedded.Options{Dir: b.TempDir(), QuotaBytes: 8 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	s, err := Open(Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint()}, Relation: "load", LeaseTTL: 60 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	fill(b, ctx, s, units)
	defer func(old int64) { loadPage = old }(loadPage)
	for _, page := range []int64{2000, 20000} {
		b.Run(fmt.Sprintf("units=%d/page=%d", units, page), func(b *testing.B) {
			loadPage = page
			for b.Loop() {
				f := wideFollower(s)
				if _, err := f.load(ctx); err != nil {
					b.Fatal(err)
				}
				if len(f.revs) < units*9 {
					b.Fatalf("read %d keys of %d units", len(f.revs), units)
				}
			}
		})
	}
}

// fill writes units' bags (seven fields), member keys and certificates (two
// leader-data keys), 100 operations a transaction.
func fill(b *testing.B, ctx context.Context, s *Store, units int) {
	cert := string(make([]byte, 1200))
	var ops []clientv3.Op
	flush := func() {
		if _, err := s.client.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range units {
		unit := fmt.Sprintf("node/%d", i)
		ops = append(ops, clientv3.OpPut(s.layout.member(unit), "{}"),
			clientv3.OpPut(s.layout.leaderKey(protocol.SignedCertificateKey(unit)), cert),
			clientv3.OpPut(s.layout.leaderKey(protocol.IssuedKey(unit)), "[]"))
		for _, f := range []string{"csr", "profile", "state", "detail", "serial", "not_after", "ca_trusts"} {
			ops = append(ops, clientv3.OpPut(s.layout.field(unit, f), f+" of "+unit))
		}
		if len(ops) >= 90 {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
}
