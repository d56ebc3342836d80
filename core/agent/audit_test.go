package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// lockedBuffer is a log output the agent's goroutines and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A certificate is on record before any unit can install it: while the audit trail
// cannot be written the leader publishes nothing, and once it can, the certificate it
// publishes has its "signed" record.
func TestNothingIsPublishedWithoutItsRecord(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := t.TempDir()
	trailPath := filepath.Join(root, "audit.log")
	trail, err := audit.Open(audit.Options{Path: trailPath, Relation: "r", Unit: "db/0"})
	if err != nil {
		t.Fatal(err)
	}
	// A directory where the trail was: every append fails, for root too.
	if err := os.Remove(trailPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(trailPath, 0o700); err != nil {
		t.Fatal(err)
	}
	store := relation.NewMemory(protocol.Schema())
	m, err := store.Join(ctx, "db/0", relation.JoinOptions{LeaderEligible: true})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	a, err := New(Options{Member: m, Backends: inProcess{newCfssl(t, filepath.Join(root, "ca"))}, Certificate: testCert, Policy: testPolicy,
		Dir: filepath.Join(root, "db-0"), Audit: trail, Log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn})})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { a.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	obs, err := store.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	certKey := protocol.SignedCertificateKey("db/0")
	// The leader signs, cannot record, and says so; a certificate published meanwhile
	// has no record (the condition each poll sees stays true once reached).
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "nothing published") {
		snap, err := obs.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if snap.LeaderData[certKey] != "" {
			t.Fatal("the leader published a certificate its audit trail did not record")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader never said it published nothing; its log:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The trail mended: the certificate is published, and on record.
	if err := os.Remove(trailPath); err != nil {
		t.Fatal(err)
	}
	var serial string
	for deadline = time.Now().Add(20 * time.Second); ; {
		snap, err := obs.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pem := snap.LeaderData[certKey]; pem != "" {
			certs, err := certutil.ParseCertificates([]byte(pem))
			if err != nil {
				t.Fatal(err)
			}
			serial = certs[0].SerialNumber.Text(16)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing published once the trail could be written; its log:\n%s", logs)
		}
		select {
		case <-snap.Changed:
		case <-time.After(time.Second):
		}
	}
	events, _, err := audit.Read(trailPath, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Event == audit.EventSigned && e.Unit == "db/0" && e.Serial == serial {
			return
		}
	}
	t.Fatalf("certificate %s was published with no signed record; the trail holds %+v", serial, events)
}
