package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/syncbuf"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// countingSigner counts the signer's calls a leader makes.
type countingSigner struct {
	sdk.Backend
	calls *atomic.Int64
}

func (s countingSigner) CA(ctx context.Context) (sdk.CA, error) {
	s.calls.Add(1)
	return s.Backend.CA(ctx)
}

func (s countingSigner) SignCSR(ctx context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	s.calls.Add(1)
	return s.Backend.SignCSR(ctx, req)
}

// auditedGroup is a memory relation and an audit trail in root, recorded by db/0, for a
// test of what a leader records; join joins a unit to it.
type auditedGroup struct {
	t         *testing.T
	store     *relation.Memory
	trail     *audit.Log
	trailPath string
}

func newAuditedGroup(t *testing.T, root string) *auditedGroup {
	t.Helper()
	g := &auditedGroup{t: t, store: relation.NewMemory(protocol.Schema()), trailPath: filepath.Join(root, "audit.log")}
	var err error
	if g.trail, err = audit.Open(audit.Options{Path: g.trailPath, Relation: "r", Unit: "db/0"}); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *auditedGroup) join(unit string, eligible bool) relation.Member {
	g.t.Helper()
	m, err := g.store.Join(context.Background(), unit, relation.JoinOptions{LeaderEligible: eligible})
	if err != nil {
		g.t.Fatal(err)
	}
	return m
}

// brokenTrail opens an audit trail in dir and puts a directory where its file was:
// every append fails, for root too. mend makes it writable again.
func brokenTrail(t *testing.T, dir string) (trail *audit.Log, path string, mend func()) {
	t.Helper()
	path = filepath.Join(dir, "audit.log")
	trail, err := audit.Open(audit.Options{Path: path, Relation: "r", Unit: "db/0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return trail, path, func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// runAgent runs an agent with opts until the test ends.
func runAgent(t *testing.T, opts Options) {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { a.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
}

// awaitPublished waits until leader data holds unit's certificate and returns its serial.
func awaitPublished(t *testing.T, obs relation.Observer, unit string, logs fmt.Stringer) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		snap, err := obs.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if pem := snap.LeaderData[protocol.SignedCertificateKey(unit)]; pem != "" {
			certs, err := certutil.ParseCertificates([]byte(pem))
			if err != nil {
				t.Fatal(err)
			}
			return certs[0].SerialNumber.Text(16)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate published for %s; the leader's log:\n%s", unit, logs)
		}
		select {
		case <-snap.Changed:
		case <-time.After(time.Second):
		}
	}
}

// A leader acts only once its lead is on record: while the audit trail cannot take
// leader_gained, however many steps it tries, it asks its signer nothing; once the trail
// is mended the lead is recorded first, then what it signs.
func TestALeaderActsOnlyOnceItsLeadIsOnRecord(t *testing.T) {
	root := t.TempDir()
	trail, trailPath, mend := brokenTrail(t, root)
	store := relation.NewMemory(protocol.Schema())
	m, err := store.Join(context.Background(), "db/0", relation.JoinOptions{LeaderEligible: true})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	logs := &syncbuf.Buffer{}
	runAgent(t, Options{Member: m, Backends: inProcess{countingSigner{newCfssl(t, filepath.Join(root, "ca")), &calls}}, Certificate: testCert,
		Policy: testPolicy, Dir: filepath.Join(root, "db-0"), Audit: trail, Log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn})})
	// Three failed steps: the count only grows, whatever the schedule.
	for deadline := time.Now().Add(20 * time.Second); strings.Count(logs.String(), "leadership not taken up") < 3; time.Sleep(20 * time.Millisecond) {
		if n := calls.Load(); n > 0 {
			t.Fatalf("the leader called its signer %d times with its lead not on record; its log:\n%s", n, logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader did not try three times to record its lead; its log:\n%s", logs)
		}
	}
	if n := calls.Load(); n > 0 {
		t.Fatalf("the leader called its signer %d times with its lead not on record", n)
	}
	mend()
	obs, err := store.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	serial := awaitPublished(t, obs, "db/0", logs)
	events, _, err := audit.Read(trailPath, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) < 2 || events[0].Event != audit.EventLeaderGained ||
		!slices.ContainsFunc(events, func(e audit.Event) bool { return e.Event == audit.EventSigned && e.Serial == serial }) {
		t.Fatalf("the trail holds %+v; want leader_gained first, then the signing of %s", events, serial)
	}
}

// A certificate is on record before any unit can install it: while the audit trail
// cannot be written the leader publishes nothing, and once it can, the certificate it
// publishes has its "signed" record.
func TestNothingIsPublishedWithoutItsRecord(t *testing.T) {
	root := t.TempDir()
	g := newAuditedGroup(t, root)
	store, trail, trailPath, join := g.store, g.trail, g.trailPath, g.join
	backend := inProcess{newCfssl(t, filepath.Join(root, "ca"))}
	logs := &syncbuf.Buffer{}
	runAgent(t, Options{Member: join("db/0", true), Backends: backend, Certificate: testCert, Policy: testPolicy,
		Dir: filepath.Join(root, "db-0"), Audit: trail, Log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn})})
	obs, err := store.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	awaitPublished(t, obs, "db/0", logs) // leading, on record

	// The trail breaks under the leader; a unit joins and asks.
	if err := os.Remove(trailPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(trailPath, 0o700); err != nil {
		t.Fatal(err)
	}
	runAgent(t, Options{Member: join("db/1", false), Backends: backend, Certificate: testCert, Policy: testPolicy, Dir: filepath.Join(root, "db-1")})
	certKey := protocol.SignedCertificateKey("db/1")
	// The leader signs, cannot record, and says so; a certificate published meanwhile
	// has no record (the condition each poll sees stays true once reached).
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "nothing published"); time.Sleep(20 * time.Millisecond) {
		snap, err := obs.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if snap.LeaderData[certKey] != "" {
			t.Fatal("the leader published a certificate its audit trail did not record")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader never said it published nothing; its log:\n%s", logs)
		}
	}

	// The trail mended: the certificate is published, and on record.
	if err := os.Remove(trailPath); err != nil {
		t.Fatal(err)
	}
	serial := awaitPublished(t, obs, "db/1", logs)
	events, _, err := audit.Read(trailPath, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(e audit.Event) bool {
		return e.Event == audit.EventSigned && e.Unit == "db/1" && e.Serial == serial
	}) {
		t.Fatalf("certificate %s was published with no signed record; the trail holds %+v", serial, events)
	}
}
