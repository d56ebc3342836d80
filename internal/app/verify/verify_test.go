package verify

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
)

type ca struct{ pkitest.CA }

func newCA(t *testing.T) ca { return ca{pkitest.NewCA(t, "test CA", time.Now())} }

// issue writes a unit directory: key, certificate for cn/dns signed by c, and ca.crt.
func (c ca) issue(t *testing.T, dir, cn, dns string, trust ca) {
	t.Helper()
	key := pkitest.NewKey(t)
	_, certPEM := c.Issue(t, key.Public(), pkitest.Leaf{CN: cn, DNS: []string{dns}})
	os.MkdirAll(dir, 0o755)
	write(t, filepath.Join(dir, "tls.key"), pkitest.KeyPEM(t, key), 0o600)
	write(t, filepath.Join(dir, "tls.crt"), []byte(certPEM), 0o644)
	write(t, filepath.Join(dir, "ca.crt"), []byte(trust.PEM), 0o644)
}

func write(t *testing.T, path string, data []byte, mode os.FileMode) {
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
}

func TestLoadAndMutualTLS(t *testing.T) {
	root, c := t.TempDir(), newCA(t)
	var units []Unit
	for _, name := range []string{"db/0", "db/1", "db/2"} {
		u := Unit{Name: name, Dir: filepath.Join(root, strings.ReplaceAll(name, "/", "-"))}
		c.issue(t, u.Dir, name, strings.ReplaceAll(name, "/", "-"), c)
		units = append(units, u)
	}
	ids, err := LoadAll(units)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		pairs []Pair
		want  int
	}{
		{"all pairs", AllPairs(len(ids)), 6},
		{"ring", Ring(len(ids)), 3},
	} {
		if n, err := MutualTLS(context.Background(), ids, tt.pairs, 4); err != nil || n != tt.want {
			t.Errorf("%s: MutualTLS = %d, %v; want %d handshakes", tt.name, n, err, tt.want)
		}
	}
	if err := SameCA(ids); err != nil {
		t.Fatal(err)
	}
}

// Ring pairs each unit with the next: every unit once client, once server.
func TestRing(t *testing.T) {
	if got := Ring(1); len(got) != 0 {
		t.Errorf("Ring(1) = %v, want none", got)
	}
	got := Ring(4)
	clients, servers := map[int]int{}, map[int]int{}
	for _, p := range got {
		clients[p.Client]++
		servers[p.Server]++
		if p.Client == p.Server {
			t.Errorf("Ring(4) pairs %d with itself", p.Client)
		}
	}
	if len(got) != 4 || len(clients) != 4 || len(servers) != 4 {
		t.Errorf("Ring(4) = %v: want each of 4 units once client and once server", got)
	}
}

func TestLoadRefusesWhatIsNotProven(t *testing.T) {
	c, stranger := newCA(t), newCA(t)
	tests := []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"key readable by others", func(d string) { c.issue(t, d, "db/0", "db-0", c); os.Chmod(filepath.Join(d, "tls.key"), 0o644) }, "mode 0644"},
		{"certificate from another CA", func(d string) { stranger.issue(t, d, "db/0", "db-0", c) }, "does not verify"},
		{"another unit's common name", func(d string) { c.issue(t, d, "db/1", "db-0", c) }, `common name "db/1"`},
		{"missing unit SAN", func(d string) { c.issue(t, d, "db/0", "other", c) }, "does not verify"},
		{"key of another certificate", func(d string) {
			c.issue(t, d, "db/0", "db-0", c)
			other := t.TempDir()
			c.issue(t, other, "db/0", "db-0", c)
			data, _ := os.ReadFile(filepath.Join(other, "tls.key"))
			write(t, filepath.Join(d, "tls.key"), data, 0o600)
		}, "private key does not match"},
		{"no files", func(string) {}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db-0")
			os.MkdirAll(dir, 0o755)
			tt.setup(dir)
			_, err := Load(Unit{Name: "db/0", Dir: dir})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "db/0: ") {
				t.Fatalf("err = %v, want one naming db/0 and containing %q", err, tt.want)
			}
		})
	}
}

func TestMutualTLSFailsAcrossCAs(t *testing.T) {
	root, a, b := t.TempDir(), newCA(t), newCA(t)
	ua := Unit{Name: "db/0", Dir: filepath.Join(root, "db-0")}
	ub := Unit{Name: "db/1", Dir: filepath.Join(root, "db-1")}
	a.issue(t, ua.Dir, "db/0", "db-0", a)
	b.issue(t, ub.Dir, "db/1", "db-1", b)
	ids, err := LoadAll([]Unit{ua, ub})
	if err != nil {
		t.Fatal(err)
	}
	n, err := MutualTLS(context.Background(), ids, AllPairs(len(ids)), 2)
	if err == nil || n != 0 {
		t.Fatalf("units of two CAs: %d handshakes, err %v; want 0 and an error", n, err)
	}
	if err := SameCA(ids); err == nil || !strings.Contains(err.Error(), "db/1: its ca.crt differs from db/0's") {
		t.Fatalf("SameCA across two CAs = %v", err)
	}
}

// Sides pairs client-only units with server-only ones and never asks a unit to take a
// side its profile refuses; every unit takes its sides at least once.
func TestSides(t *testing.T) {
	u := func(profiles ...string) []Unit {
		out := make([]Unit, len(profiles))
		for i, p := range profiles {
			out[i] = Unit{Name: fmt.Sprintf("u/%d", i), Profile: p}
		}
		return out
	}
	tests := []struct {
		name  string
		units []Unit
		all   bool
		want  []Pair
	}{
		{"peers make a ring", u("peer", "", "peer"), false, Ring(3)},
		{"peers, all pairs", u("peer", "peer"), true, AllPairs(2)},
		{"three clients, two servers", u("client", "client", "client", "server", "server"), false,
			[]Pair{{0, 3}, {1, 4}, {2, 3}}},
		{"every client to every server", u("client", "server", "server"), true, []Pair{{0, 1}, {0, 2}}},
		{"a unit never dials itself", u("peer", "client"), false, []Pair{{1, 0}}},
		{"clients alone: nothing to dial", u("client", "client"), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Sides(tt.units, tt.all)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Sides = %v, want %v", got, tt.want)
			}
			for _, p := range got {
				if !tt.units[p.Client].CanDial() || !tt.units[p.Server].CanServe() || p.Client == p.Server {
					t.Fatalf("pair %v asks a unit for a side its profile refuses", p)
				}
			}
		})
	}
}

// up's proof fails when two units' certificates hold a name only one unit may hold, and
// passes for names the policy shares (exclusive says which are held alone).
func TestOneHolder(t *testing.T) {
	c := newCA(t)
	id := func(unit string, dns ...string) *Identity {
		cert, _ := c.Issue(t, pkitest.NewKey(t).Public(), pkitest.Leaf{CN: unit, DNS: dns, IPs: []net.IP{net.ParseIP("10.0.0.1")}})
		return &Identity{Unit: Unit{Name: unit}, Cert: cert}
	}
	shared := func(_, name string) bool { return name != "localhost" && name != "10.0.0.1" }
	for _, tt := range []struct {
		name string
		ids  []*Identity
		want string // "" passes
	}{
		{"names of their own", []*Identity{id("a/0", "a-0", "localhost"), id("a/1", "a-1", "localhost")}, ""},
		{"one amphora ID in two certificates", []*Identity{id("a/0", "a-0", "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50"), id("a/1", "a-1", "9F0C2A7E-3B1D-4C5E-8F6A-0B1C2D3E4F50.")},
			"a/0 and a/1 both hold 9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := OneHolder(tt.ids, shared)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("OneHolder = %v, want %q", err, tt.want)
			}
		})
	}
	if err := OneHolder([]*Identity{id("a/0", "a-0"), id("a/1", "a-1")}, func(string, string) bool { return true }); err == nil ||
		!strings.Contains(err.Error(), "10.0.0.1") {
		t.Fatalf("an IP both hold alone: %v", err)
	}
}

// A unit of a group under an enterprise root (root -> int1 -> int2) verifies as OpenSSL
// would: tls.crt sends int2 and int1, ca.crt holds the root; with ca.crt holding int1
// instead (the root unknown) the chain is partial and refused, naming int1; with tls.crt
// lacking the intermediates it does not verify at all.
func TestLoadVerifiesAChainAsOpenSSLDoes(t *testing.T) {
	root := pkitest.NewCA(t, "root", time.Now())
	int1 := root.Intermediate(t, "int1")
	int2 := int1.Intermediate(t, "int2")
	for _, tt := range []struct {
		name, sent, caFile, wantErr string
	}{
		{"the root as anchor", int2.PEM + int1.PEM, root.PEM, ""},
		{"int1 as anchor", int2.PEM, int1.PEM, `only by taking "int1" as an anchor, which is not a root`},
		{"no intermediates sent", "", root.PEM, "does not verify against"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			key := pkitest.NewKey(t)
			_, leaf := int2.Issue(t, key.Public(), pkitest.Leaf{CN: "db/0", DNS: []string{"db-0"}})
			write(t, filepath.Join(dir, "tls.key"), pkitest.KeyPEM(t, key), 0o600)
			write(t, filepath.Join(dir, "tls.crt"), []byte(leaf+tt.sent), 0o644)
			write(t, filepath.Join(dir, "ca.crt"), []byte(tt.caFile), 0o644)
			_, err := Load(Unit{Name: "db/0", Dir: dir})
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Load: %v; want %q", err, tt.wantErr)
			}
		})
	}
}
