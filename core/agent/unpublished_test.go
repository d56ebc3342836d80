package agent

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/syncbuf"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// signsPerUnit counts the CSRs the signer signs for each unit.
type signsPerUnit struct {
	sdk.Backend
	mu    sync.Mutex
	count map[string]int
}

func (s *signsPerUnit) SignCSR(ctx context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	s.mu.Lock()
	s.count[req.Unit]++
	s.mu.Unlock()
	return s.Backend.SignCSR(ctx, req)
}

func (s *signsPerUnit) of(unit string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[unit]
}

// flakyLeaderWrites fails the first writes of leader data that carry unit's
// certificate, as a store that times out does.
type flakyLeaderWrites struct {
	relation.Member
	unit  string
	fails atomic.Int64
}

func (m *flakyLeaderWrites) SetLeaderData(ctx context.Context, kv map[string]string, guards ...relation.Guard) ([]string, error) {
	if _, ok := kv[protocol.SignedCertificateKey(m.unit)]; ok && m.fails.Add(-1) >= 0 {
		return nil, errors.New("etcdserver: request timed out")
	}
	return m.Member.SetLeaderData(ctx, kv, guards...)
}

// A leader whose publication of a certificate fails publishes that same certificate at
// its next try; it does not have the CSR signed again: one certificate for the CSR,
// with one `signed` record, and it is the one the unit receives.
func TestASignedCertificateIsPublishedNotSignedAgain(t *testing.T) {
	root := t.TempDir()
	g := newAuditedGroup(t, root)
	store, trail, trailPath, join := g.store, g.trail, g.trailPath, g.join
	signer := &signsPerUnit{Backend: newCfssl(t, filepath.Join(root, "ca")), count: map[string]int{}}
	leader := &flakyLeaderWrites{Member: join("db/0", true), unit: "db/1"}
	leader.fails.Store(2)
	logs := &syncbuf.Buffer{}
	runAgent(t, Options{Member: leader, Backends: inProcess{signer}, Certificate: testCert, Policy: testPolicy,
		Dir: filepath.Join(root, "db-0"), Audit: trail, Log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})})
	runAgent(t, Options{Member: join("db/1", false), Backends: inProcess{signer}, Certificate: testCert, Policy: testPolicy, Dir: filepath.Join(root, "db-1")})
	obs, err := store.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	serial := awaitPublished(t, obs, "db/1", logs)
	if n := leader.fails.Load(); n >= 0 {
		t.Fatalf("the store failed %d of the 2 writes it was to fail; the test proves nothing", 2-n)
	}
	if n := signer.of("db/1"); n != 1 {
		t.Errorf("the signer signed db/1's CSR %d times, want once; the leader's log:\n%s", n, logs)
	}
	events, _, err := audit.Read(trailPath, audit.Filter{Unit: "db/1"})
	if err != nil {
		t.Fatal(err)
	}
	var signed []string
	for _, e := range events {
		if e.Event == audit.EventSigned {
			signed = append(signed, e.Serial)
		}
	}
	if len(signed) != 1 || signed[0] != serial {
		t.Errorf("the trail records db/1's certificates %v, want the one published (%s) alone", signed, serial)
	}
	if got := installedSerial(t, filepath.Join(root, "db-1")); got != serial {
		t.Errorf("db/1 installed serial %s, want %s", got, serial)
	}
}

// installedSerial is the serial of the certificate installed in dir.
func installedSerial(t *testing.T, dir string) string {
	t.Helper()
	for range 200 {
		local, _, err := files{dir: dir}.loadLocal()
		if err == nil && local.Installed != nil {
			return local.Installed.Cert.SerialNumber.Text(16)
		}
		sleepBriefly()
	}
	t.Fatalf("nothing installed in %s", dir)
	return ""
}

func sleepBriefly() { time.Sleep(50 * time.Millisecond) }
