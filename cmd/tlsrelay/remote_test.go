package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

// RemoteExample is the sdk's remote signer example, forwarding to `cfssl serve`.
const remoteExample = "github.com/tlsrelay/tlsrelay/sdk/examples/remote/cmd/tlsrelay-plugin-remote"

// The sdk's remote signer, in front of a real `cfssl serve` (installed with go install):
// it passes the kit as a child process with its fixed lifetime declared, runs a group
// under `up` whose certificates the service signs, with remote custody, and a group
// asking for another lifetime is refused at once, with the reason.
func TestRemoteSignerExample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := fileWriter(t, dir)
	caPEM, keyPEM, err := certutil.NewCA("remote service CA", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	url := testservers.CfsslServe(t, write("ca.pem", string(caPEM)), write("ca-key.pem", string(keyPEM)), 720*time.Hour)
	bin := testbin.Build(t, remoteExample)
	pluginCfg := fmt.Sprintf(`{"url": %q, "validity": "720h"}`, url)

	results, err := plugintest.Verify(plugintest.Command([]byte(pluginCfg), bin), plugintest.Options{FixedValidity: 720 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Err != nil || r.Skipped != "" {
			t.Errorf("kit: %s: %v %s", r.Check, r.Err, r.Skipped)
		}
		// What the kit cannot prove of a remote signer, it says, never passes.
		if strings.Contains(r.Check, "(ca_remote)") && !strings.Contains(r.NotClaimed, "claimed, not exercised") ||
			strings.Contains(r.Check, "sharing one state directory") && !strings.Contains(r.NotClaimed, "a remote CA") {
			t.Errorf("kit: %s: %+v; want it reported as not proved, saying why", r.Check, r)
		}
	}
	t.Log(plugintest.Summary(results))

	group := func(validity string) string {
		return write("tlsrelay-"+validity+".yaml", fmt.Sprintf(`certificate: {validity: %s}
roles: {csr: cfssl, signer: remote}
plugins:
  remote: {command: %s, sha256: %s, config: %s}
`, validity, bin, testbin.SHA256(t, bin), pluginCfg))
	}
	r := run(t, "up", "--config", group("720h"), "--dir", filepath.Join(dir, "up"), "--units", "3")
	if r.code != 0 || !strings.Contains(r.stdout, "OK: 3 units up") || !strings.Contains(r.stdout, "remote service CA") {
		t.Fatalf("up on the remote signer: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "up", "--config", group("48h"), "--dir", filepath.Join(dir, "mismatch"), "--units", "2", "--timeout", "60s")
	if r.code != 2 || !strings.Contains(r.stdout+r.stderr, "the remote CA signs for 720h") {
		t.Fatalf("up asking 48h of a remote CA that signs for 720h: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
