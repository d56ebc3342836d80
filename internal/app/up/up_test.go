package up

import (
	"io"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/protocol"
)

func TestDefaultUnitsPerProcess(t *testing.T) {
	tests := []struct{ units, perProcess, processes int }{
		{1, 1, 1},
		{3, 1, 3},
		{4, 1, 4},
		{5, 2, 3},
		{16, 4, 4},
		{100, 25, 4},
		{1000, 125, 8},
		{2000, 125, 16},
		{10000, 625, 16},
	}
	for _, tt := range tests {
		got := DefaultUnitsPerProcess(tt.units)
		processes := (tt.units + got - 1) / got
		if got != tt.perProcess || processes != tt.processes {
			t.Errorf("%d units: %d a process in %d processes, want %d in %d", tt.units, got, processes, tt.perProcess, tt.processes)
		}
	}
}

// A group that does not converge says why: the leader's last error (it signs nobody),
// and each waiting unit's state and last error.
func TestPendingNamesTheLeadersLastError(t *testing.T) {
	p := newProgress(io.Discard, 3)
	p.update(agent.Status{Unit: "node/0", Leader: true, UnitStatus: protocol.UnitStatus{State: protocol.StateCertificateAvailable, Serial: "ab",
		Detail: "expires", Error: "not signing: the signer's CA: plugins.hsm.config: failed precondition: no token labelled \"x\""}})
	p.update(agent.Status{Unit: "node/1", UnitStatus: protocol.UnitStatus{State: protocol.StateAwaitingCertificate, Detail: "CSR published"}})
	got := p.pending()
	for _, want := range []string{"node/0 (leader)", "last error: not signing: the signer's CA", "node/1: " + string(protocol.StateAwaitingCertificate), "1 units never reported"} {
		if !strings.Contains(got, want) {
			t.Errorf("pending lacks %q:\n%s", want, got)
		}
	}
}
