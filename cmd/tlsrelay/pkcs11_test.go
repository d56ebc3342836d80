package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// pkcs11Plugin is the plugins: entry of a pkcs11 signer on a fresh SoftHSM2 token.
func pkcs11Plugin(t *testing.T, shared bool) string {
	t.Helper()
	_, pinFile := testservers.StartSoftHSM(t, "tlsrelay")
	bin := testbin.Build(t, testbin.Pkcs11Plugin)
	return fmt.Sprintf(`plugins:
  hsm:
    command: %s
    sha256: %s
    env: [SOFTHSM2_CONF]
    config: {module: %s, token_label: tlsrelay, pin_file: %s, ca_common_name: token CA, shared: %t}
`, bin, testbin.SHA256(t, bin), testservers.SoftHSMModule, pinFile, shared)
}

// `tlsrelay up --config` runs a group on the pkcs11 signer: every certificate from the
// CA whose key is in the token.
func TestUpOnAPKCS11Token(t *testing.T) {
	dir := t.TempDir()
	config := fileWriter(t, dir)("tlsrelay.yaml", "roles: {csr: cfssl, signer: hsm}\n"+pkcs11Plugin(t, false))
	r := run(t, "up", "--config", config, "--dir", t.TempDir(), "--units", "3")
	if r.code != 0 || !strings.Contains(r.stdout, "OK: 3 units up") || !strings.Contains(r.stdout, "token CA") {
		t.Fatalf("up on the pkcs11 signer: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Leaders on one token (shared: true, as a network HSM is): a new leader after a
// kill -9 signs with the same CA, importing nothing and with no ca_seal; `ca rotate`
// has the token make the next key (GenerateCA), and the group rotates to it; no agent
// exits.
func TestPKCS11FailoverAndRotation(t *testing.T) {
	ag, obs, _ := embeddedGroup(t, "hsm", 6*time.Second, "certificate: {validity: 1h}\nroles: {csr: cfssl, signer: hsm}\n"+pkcs11Plugin(t, true), false)
	units := []string{"web/0", "web/1", "web/2"}
	for _, u := range units {
		ag.start(u)
	}
	snap := awaitObs(t, obs, "3 units signed", time.Minute, allAvailable(units...))
	groupCA := caFingerprint(t, snap.LeaderData[protocol.KeyCA])
	if custody := snap.Units[snap.Leader][protocol.KeyCustody]; custody != "shared" {
		t.Fatalf("the leader says custody %q, want shared", custody)
	}
	ag.signal(snap.Leader, syscall.SIGKILL)
	ag.start("web/3")
	snap = awaitObs(t, obs, "a new leader signing web/3", time.Minute, func(s relation.Snapshot) bool {
		return s.Leader != "" && available(s, "web/3")
	})
	if got := caFingerprint(t, snap.LeaderData[protocol.KeyCA]); got != groupCA || !signedBy(t, snap, "web/3", groupCA) {
		t.Fatalf("after failover the CA is %s, want the token's %s", got, groupCA)
	}
	r := runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--timeout", "2m")
	if r.code != 0 || !strings.Contains(r.stdout, "done: the group signs with CA") {
		t.Fatalf("ca rotate on the token exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	running := ag.running()
	awaitObs(t, obs, "every unit on the token's next CA", time.Minute, func(s relation.Snapshot) bool {
		ca := protocol.TrustsOf(s.LeaderData[protocol.KeyCA])
		for _, u := range running {
			if !available(s, u) || s.Units[u][protocol.KeyTrusts] != ca {
				return false
			}
		}
		return ca != groupCA && !strings.Contains(ca, ",")
	})
	assertAlive(t, ag, running...)
}
