package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// A unit refused for a SAN the leader's policy does not allow, its config then fixed and
// its agent restarted, makes a new CSR: the pending one no longer matches its config.
func TestRejectedUnitRecoversOnceFixed(t *testing.T) {
	t.Parallel()
	ag, obs, _ := embeddedGroup(t, "rejected", 2*time.Second, "", false)
	ag.start("web/0")
	awaitObs(t, obs, "web/0 with a certificate", time.Minute, func(s relation.Snapshot) bool { return available(s, "web/0") })
	// Its own config allows the name; the leader's does not.
	ag.start("web/1", "TLSRELAY_CERTIFICATE_SANS=web-1,bad.example", "TLSRELAY_POLICY_SANS=bad.example")
	awaitObs(t, obs, "web/1 refused", time.Minute, func(s relation.Snapshot) bool {
		return s.Units["web/1"][protocol.KeyState] == string(protocol.StateRejected)
	})
	ag.signal("web/1", syscall.SIGKILL) // its pending key and CSR stay on disk
	ag.start("web/1")
	awaitObs(t, obs, "web/1 with a certificate once its config is fixed", 30*time.Second, func(s relation.Snapshot) bool { return available(s, "web/1") })
	if log := ag.logOf("web/1"); !strings.Contains(log, "the pending CSR no longer matches the config") {
		t.Errorf("web/1 did not say why it made a new CSR:\n%s", log)
	}
}
