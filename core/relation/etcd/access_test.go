package etcd_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/core/relation/relationtest"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// etcd itself enforces who may write what: on Debian's etcd-server over TLS with auth on,
// a group whose controller leads and whose amphorae only ask works under its roles, and
// every step outside a unit's role is refused by etcd.
func TestAccessEnforcedByEtcd(t *testing.T) {
	srv := testservers.StartEtcd(t)
	tlsConfig, err := etcd.TLSConfig(srv.CAFile, srv.CertFile, srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	const rel = "lb"
	openAs := func(user, password, relationName string) *etcd.Store {
		t.Helper()
		return openWithTLS(t, srv, tlsConfig, relationName, user, password)
	}
	ctx, cancel := context.WithTimeout(context.Background(), relationtest.Timeout)
	defer cancel()

	admin := openAs("", "", rel)
	units := []etcd.UnitAccess{
		{Unit: "ctl/0", LeaderEligible: true, Password: "ctl-0-secret"},
		{Unit: "amp/0", Password: "amp-0-secret"},
		{Unit: "amp/1", Password: "amp-1-secret"},
	}
	if err := etcd.GrantAccess(ctx, admin.Client(), rel, protocol.Schema(), units); err != nil {
		t.Fatal(err)
	}
	if err := etcd.EnableAuth(ctx, admin.Client(), "root-secret"); err != nil {
		t.Fatal(err)
	}
	// Idempotent: run again as root, nothing breaks.
	root := openAs("root", "root-secret", rel)
	if err := etcd.GrantAccess(ctx, root.Client(), rel, protocol.Schema(), units); err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
	if err := etcd.EnableAuth(ctx, root.Client(), "root-secret"); err != nil {
		t.Fatalf("second enable: %v", err)
	}
	// Re-running with other flags converges each role to exactly what they say (grants
	// first, then revokes: never a moment without the permissions a unit uses).
	permsOf := func(unit string) string {
		t.Helper()
		r, err := root.Client().RoleGet(ctx, etcd.UserName(rel, unit))
		if err != nil {
			t.Fatal(err)
		}
		var perms []string
		for _, p := range r.Perm {
			perms = append(perms, fmt.Sprintf("%s %q-%q", p.PermType, p.Key, p.RangeEnd))
		}
		slices.Sort(perms)
		return strings.Join(perms, "; ")
	}
	asMember := permsOf("amp/0")
	promoted := append([]etcd.UnitAccess{}, units...)
	promoted[1].LeaderEligible = true
	if err := etcd.GrantAccess(ctx, root.Client(), rel, protocol.Schema(), promoted); err != nil {
		t.Fatal(err)
	}
	asLeader := permsOf("amp/0")
	if err := etcd.GrantAccess(ctx, root.Client(), rel, protocol.Schema(), units); err != nil {
		t.Fatal(err)
	}
	if after := permsOf("amp/0"); asLeader == asMember || after != asMember {
		t.Fatalf("amp/0's role as a member: %s\nwhen made eligible: %s\nafter: %s\nwant the member's again", asMember, asLeader, after)
	}

	// The group works under its roles.
	ctl := openAs(etcd.UserName(rel, "ctl/0"), "ctl-0-secret", rel)
	amp := openAs(etcd.UserName(rel, "amp/0"), "amp-0-secret", rel)
	leader := relationtest.Join(t, ctl, "ctl/0", true)
	relationtest.Await(t, leader, "ctl/0 to lead", func(s relation.Snapshot) bool { return s.Leader == "ctl/0" })
	member := relationtest.Join(t, amp, "amp/0", false)
	if err := member.SetUnitData(ctx, map[string]string{"csr": "amp-0-csr"}); err != nil {
		t.Fatalf("amp/0 writes its own bag: %v", err)
	}
	relationtest.Await(t, leader, "amp/0's csr at the leader", func(s relation.Snapshot) bool { return s.Units["amp/0"]["csr"] == "amp-0-csr" })
	certKey := protocol.Schema().UnitKeys("amp/0")[0]
	if _, err := leader.SetLeaderData(ctx, map[string]string{"ca": "the-ca", certKey: "amp-0-cert"}); err != nil {
		t.Fatalf("the eligible leader writes leader data: %v", err)
	}
	relationtest.Await(t, member, "amp/0's certificate", func(s relation.Snapshot) bool {
		return s.LeaderData[certKey] == "amp-0-cert" && s.LeaderData["ca"] == "the-ca" && s.Leader == "ctl/0"
	})

	// Everything outside amp/0's role is refused by etcd, whatever the client library does.
	kv := amp.Client()
	p := "/tlsrelay/" + rel + "/"
	for _, c := range []struct {
		name string
		op   clientv3.Op
	}{
		{"write another unit's bag", clientv3.OpPut(p+"units/amp/1/csr", "forged")},
		{"write a bag under a longer name", clientv3.OpPut(p+"units/amp/0x/csr", "forged")},
		{"delete another unit's bag", clientv3.OpDelete(p+"units/ctl/0/", clientv3.WithPrefix())},
		{"claim another unit's presence", clientv3.OpPut(p+"members/amp/1", "x")},
		{"claim a presence under a longer name", clientv3.OpPut(p+"members/amp/01", "x")},
		{"write leader data", clientv3.OpPut(p+"leader/ca", "forged-ca")},
		{"write its own certificate", clientv3.OpPut(p+"leader/"+certKey, "forged")},
		{"campaign (say who leads)", clientv3.OpPut(p+"elected", "amp/0")},
		{"read another unit's bag", clientv3.OpGet(p+"units/ctl/0/", clientv3.WithPrefix())},
		{"read another unit's certificate", clientv3.OpGet(p + "leader/" + protocol.Schema().UnitKeys("amp/1")[0])},
		{"write its own name in another relation", clientv3.OpPut("/tlsrelay/other/units/amp/0/csr", "x")},
		{"write a field the protocol does not know", clientv3.OpPut(p+"units/amp/0/filler", "x")},
		{"write a sub-key of its bag", clientv3.OpPut(p+"units/amp/0/x/csr", "x")},
		{"delete its whole bag at once", clientv3.OpDelete(p+"units/amp/0/", clientv3.WithPrefix())},
	} {
		if _, err := kv.Do(ctx, c.op); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("amp/0 may not %s: etcd answered %v, want permission denied", c.name, err)
		}
	}
	// Joined under another unit's name, amp/0's credentials get nowhere.
	if _, err := amp.Join(ctx, "amp/1", relation.JoinOptions{}); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("amp/0's credentials joined as amp/1: %v, want permission denied", err)
	}
	// A wrong password is refused at the door.
	wrong, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint}, TLS: tlsConfig,
		Username: etcd.UserName(rel, "amp/1"), Password: "guess", Relation: rel, DialTimeout: 3 * time.Second})
	if err == nil {
		defer wrong.Close()
		_, err = wrong.Join(ctx, "amp/1", relation.JoinOptions{})
	}
	if !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Errorf("a wrong password: %v, want authentication failed", err)
	}
	// Nothing the refused writes tried landed.
	relationtest.Await(t, leader, "the relation as the group wrote it", func(s relation.Snapshot) bool {
		_, amp1 := s.Units["amp/1"]
		return !amp1 && s.LeaderData["ca"] == "the-ca" && s.LeaderData[certKey] == "amp-0-cert" && s.Leader == "ctl/0"
	})

	// etcd restarted (its auth tokens gone): password-authenticated units carry on.
	srv.Kill()
	time.Sleep(3 * time.Second)
	srv.Start(t)
	relationtest.Await(t, member, "amp/0 rejoined", func(relation.Snapshot) bool {
		return member.SetUnitData(ctx, map[string]string{"csr": "amp-0-csr-2"}) == nil
	})
	relationtest.Await(t, leader, "amp/0's new csr at the leader after etcd's restart", func(s relation.Snapshot) bool {
		return s.Units["amp/0"]["csr"] == "amp-0-csr-2"
	})
}

// A member whose etcd role an older `etcd bootstrap` made, before the relation gained a
// group key (ca_chain), still reads the group: it goes on without the key it may not
// read, as the version before it did, rather than read nothing at all.
func TestAMemberWhoseRolePredatesAGroupKeyReadsTheGroup(t *testing.T) {
	srv := testservers.StartEtcd(t)
	tlsConfig, err := etcd.TLSConfig(srv.CAFile, srv.CertFile, srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	const rel = "old"
	openAs := func(user, password string) *etcd.Store {
		t.Helper()
		return openWithTLS(t, srv, tlsConfig, rel, user, password)
	}
	ctx, cancel := context.WithTimeout(context.Background(), relationtest.Timeout)
	defer cancel()
	older := protocol.Schema()
	older.GroupKeys = slices.DeleteFunc(slices.Clone(older.GroupKeys), func(k string) bool { return k == protocol.KeyCAChain })
	units := []etcd.UnitAccess{{Unit: "ctl/0", LeaderEligible: true, Password: "ctl-secret"}, {Unit: "amp/0", Password: "amp-secret"}}
	if err := etcd.GrantAccess(ctx, openAs("", "").Client(), rel, older, units); err != nil {
		t.Fatal(err)
	}
	if err := etcd.EnableAuth(ctx, openAs("", "").Client(), "root-secret"); err != nil {
		t.Fatal(err)
	}
	leader := relationtest.Join(t, openAs(etcd.UserName(rel, "ctl/0"), "ctl-secret"), "ctl/0", true)
	relationtest.Await(t, leader, "ctl/0 to lead", func(s relation.Snapshot) bool { return s.Leader == "ctl/0" })
	if _, err := leader.SetLeaderData(ctx, map[string]string{protocol.KeyCA: "the CA"}); err != nil {
		t.Fatal(err)
	}
	member := relationtest.Join(t, openAs(etcd.UserName(rel, "amp/0"), "amp-secret"), "amp/0", false)
	relationtest.Await(t, member, "the CA, read under the older role", func(s relation.Snapshot) bool {
		return s.Leader == "ctl/0" && s.LeaderData[protocol.KeyCA] == "the CA"
	})
}

// openWithTLS opens relationName on srv as user (none: ""), until the test ends.
func openWithTLS(t *testing.T, srv *testservers.Etcd, tlsConfig *tls.Config, relationName, user, password string) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint}, TLS: tlsConfig, Username: user,
		Password: password, Relation: relationName, LeaseTTL: 2 * time.Second, DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
