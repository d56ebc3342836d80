package agent

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// A unit whose clock is half an hour behind the leader's does not wait in silence: it
// reports the skew as its error (status shows it) and in its metric, and installs the
// certificate once its clock reaches the start.
func TestClockSkewIsReported(t *testing.T) {
	root := t.TempDir()
	backend := inProcess{newCfssl(t, filepath.Join(root, "ca"))}
	store := relation.NewMemory(protocol.Schema())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	defer func() { cancel(); <-done; <-done }()
	var behind atomic.Int64
	behind.Store(int64(30 * time.Minute))
	var reported atomic.Value
	for _, unit := range []string{"db/0", "db/1"} {
		m, err := store.Join(ctx, unit, relation.JoinOptions{LeaderEligible: unit == "db/0"})
		if err != nil {
			t.Fatal(err)
		}
		opts := Options{Member: m, Backends: backend, Certificate: testCert, Policy: testPolicy, Dir: filepath.Join(root, protocol.UnitDNSName(unit))}
		if unit == "db/1" {
			opts.Now = func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) }
			opts.OnStatus = func(s Status) { reported.Store(s.Error) }
		}
		a, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		go func() { a.Run(ctx); done <- struct{}{} }()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if e, _ := reported.Load().(string); strings.Contains(e, "after this host's clock says it is now") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("db/1, 30 minutes behind, reported %q", reported.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	behind.Store(0) // the clock is put right: the certificate is installed, the error clears
	deadline = time.Now().Add(20 * time.Second)
	for {
		local, _, _ := files{dir: filepath.Join(root, "db-1")}.loadLocal()
		if e, _ := reported.Load().(string); local.Installed != nil && e == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("db/1 with its clock right: installed %v, error %q", local.Installed != nil, reported.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
