package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// Plugins on demand: between renewals a unit that does not lead runs no plugin process
// (plugin_idle), the leader keeps its signer; when the renewal comes, the unit's plugin
// starts again, makes the CSR, and the renewed certificate is installed.
func TestIdleNonLeaderRunsNoPluginUntilItRenews(t *testing.T) {
	t.Parallel()
	ag, obs, _ := embeddedGroup(t, "idle", 4*time.Second, `plugin_idle: 2s
certificate: {validity: 1m, renew_at: 0.5, renew_jitter: 0.01}
`, true)
	ag.start("web/0")
	ag.start("web/1")
	snap := awaitObs(t, obs, "2 units signed", time.Minute, allAvailable("web/0", "web/1"))
	follower, leader := "web/1", snap.Leader
	if leader == follower {
		follower = "web/0"
	}
	// The agent's child processes (its plugins), over all of its threads.
	children := func(unit string) []string {
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(ag.pid(unit)), "task", "*", "children"))
		var pids []string
		for _, task := range tasks {
			b, _ := os.ReadFile(task)
			pids = append(pids, strings.Fields(string(b))...)
		}
		return pids
	}
	if len(children(follower)) == 0 || len(children(leader)) == 0 {
		t.Fatalf("no plugin process seen right after issuance: %v %v", children(follower), children(leader))
	}
	awaitFor(t, follower+" to run no plugin", 30*time.Second, func() bool { return len(children(follower)) == 0 })
	if s := observeNow(t, obs); s.Leader == leader && len(children(leader)) == 0 {
		t.Fatalf("the leader %s stopped its signer", leader)
	}
	before := snap.Units[follower][protocol.KeySerial]
	renewed := awaitObs(t, obs, follower+" renewed", 90*time.Second, func(s relation.Snapshot) bool {
		return available(s, follower) && s.Units[follower][protocol.KeySerial] != before
	})
	serial := renewed.Units[follower][protocol.KeySerial]
	awaitFor(t, follower+"'s renewed certificate installed", 30*time.Second, func() bool {
		return readSerial(t, filepath.Join(ag.unitDir(follower), "tls.crt")) == serial
	})
	if !strings.Contains(ag.logOf(follower), "installed certificate") {
		t.Error("no installation in the log")
	}
	awaitFor(t, follower+" to run no plugin again", 30*time.Second, func() bool { return len(children(follower)) == 0 })
}

func awaitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
	}
}

func observeNow(t *testing.T, obs relation.Observer) relation.Snapshot {
	t.Helper()
	s, err := obs.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
