package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
)

// Every unit's plugins are told the group's certificate.validity, however a process runs
// its units: one each, or several (up runs six units two to a process), whose plugin
// host was assembled apart and was never told it. A signer with a fixed lifetime refuses
// a mismatch; this one refuses anything but 2h.
func TestEveryPluginHostIsToldTheValidity(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := testbin.Build(t, testbin.Custodian)
	config := func(validity string) string {
		return fileWriter(t, dir)("fixed-"+validity+".yaml", fmt.Sprintf(`certificate: {validity: %s}
roles: {csr: cfssl, signer: keeper}
plugins:
  keeper:
    command: %s
    sha256: %s
    env: [CUSTODIAN_CUSTODY]
    config: {ca_dir: %q, custody: local, want_validity: 2h}
`, validity, bin, testbin.SHA256(t, bin), filepath.Join(dir, "ca-"+validity)))
	}
	env := []string{"CUSTODIAN_CUSTODY=local"}
	for _, units := range []string{"1", "6"} {
		if r := runWith(t, env, "up", "--config", config("2h"), "--units", units, "--dir", filepath.Join(dir, "told-"+units)); r.code != 0 {
			t.Fatalf("up --units %s with certificate.validity 2h: exit %d, want 0\n%s%s", units, r.code, r.stdout, r.stderr)
		}
	}
	r := runWith(t, env, "up", "--config", config("3h"), "--units", "6", "--dir", filepath.Join(dir, "mismatch"))
	if r.code == 0 || !strings.Contains(r.stderr, "the host told a validity of 3h0m0s, this signer signs for 2h0m0s") {
		t.Fatalf("up --units 6 with certificate.validity 3h: exit %d, want the signer's refusal\n%s%s", r.code, r.stdout, r.stderr)
	}
}
