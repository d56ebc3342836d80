package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/app/status"
	"github.com/tlsrelay/tlsrelay/internal/testkit/netlab"
)

// An etcd member cut from its peers but not from its clients, on the leader's host,
// whose client reaches only it (a firewall that drops the peer port): the two other
// members are a healthy majority, and the group goes on with them. The isolated
// member answers at once that it has no leader (every request says it needs one), so
// clients elsewhere go to the others rather than wait out a proposal's or a read's
// timeout on it, and a lease keepalive left unanswered there moves to another member;
// the leader on the isolated host loses its lease and stops acting; a unit that starts
// after the cut, on another host, is signed within two lease TTLs of asking (its CSR),
// and no unit on another host loses its lease.
func TestIsolatedEtcdMember(t *testing.T) {
	t.Parallel()
	lab := netlab.New(t, 5)
	dir := t.TempDir()
	cluster := lab.StartEtcd(dir, 1, 2, 3)
	const ttl = 6 * time.Second
	p := newPartitionedGroup(t, lab, dir, fmt.Sprintf(`relation:
  name: lab
  store: etcd
  etcd:
    endpoints: [%s]
    tls: {ca_file: %q, cert_file: %q, key_file: %q}
    lease_ttl: %s
`, strings.Join(cluster.Endpoints, ", "), cluster.CAFile, cluster.CertFile, cluster.KeyFile, ttl))
	p.start(1)
	p.await("web/1 to lead", 2, time.Minute, func(g status.Group) bool { return g.Leader == "web/1" })
	for i := 2; i <= 4; i++ {
		p.start(i)
	}
	p.await("four units with certificates", 2, 2*time.Minute, func(g status.Group) bool { return p.available(g, 1, 2, 3, 4) })

	lab.IsolateMember(1, 2, 3)
	asked := time.Now()
	p.start(5)
	g := p.await("web/5 signed with member 1 isolated", 2, time.Minute, func(g status.Group) bool {
		return p.available(g, 5)
	})
	// From its CSR to its certificate, by its own log: what a slow start of the process
	// or of the status poll costs is not the store's.
	created, installed := p.logged(5, "created CSR"), p.logged(5, "installed certificate")
	if len(created) == 0 || len(installed) == 0 {
		t.Fatalf("web/5 logged its CSR at %v and its certificate at %v", created, installed)
	}
	took := installed[0].Sub(created[0])
	t.Logf("web/5 signed %s after it made its CSR (%s after it started), member 1 isolated; leader %s",
		took.Round(100*time.Millisecond), time.Since(asked).Round(100*time.Millisecond), g.Leader)
	if took > 2*ttl {
		t.Errorf("web/5 was signed %s after it asked, with two healthy members: want within two lease TTLs (%s)", took.Round(100*time.Millisecond), 2*ttl)
	}
	if g.Leader == "web/1" {
		t.Errorf("web/1, whose member has no leader, still leads")
	}
	p.leasesKept(asked, 1)

	lab.Rejoin(1)
	p.await("the group whole again", 2, time.Minute, func(g status.Group) bool { return g.Leader != "" && p.available(g, 1, 2, 3, 4, 5) })
}
