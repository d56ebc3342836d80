package etcd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testservers"
)

// With two of three members gone, a join fails saying that the cluster has no leader
// and which members answer, not only that a deadline passed; with all three gone, that
// none answers.
func TestQuorumLossIsNamed(t *testing.T) {
	cluster := testservers.StartEtcdCluster(t, 3)
	tlsConfig, err := TLSConfig(cluster.CAFile, cluster.CertFile, cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Schema: protocol.Schema(), Endpoints: cluster.Endpoints, Relation: "quorum", TLS: tlsConfig})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	join := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		m, err := s.Join(ctx, "db/0", relation.JoinOptions{})
		if err == nil {
			m.Leave(context.Background())
		}
		return err
	}
	if err := join(); err != nil {
		t.Fatalf("join with the whole cluster: %v", err)
	}
	cluster.Kill(2)
	cluster.Kill(3)
	err = join()
	if err == nil || !strings.Contains(err.Error(), "etcd cluster has no leader (quorum lost?): 1 of 3 members answer ("+cluster.Endpoints[0]+")") {
		t.Fatalf("join without quorum: %v", err)
	}
	cluster.Kill(1)
	if err := join(); err == nil || !strings.Contains(err.Error(), "no etcd member answers") {
		t.Fatalf("join with no member: %v", err)
	}
}
