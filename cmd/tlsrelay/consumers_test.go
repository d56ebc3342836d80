package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Under up, every unit's on_change runs once its whole set of files is in place, never
// on a CRL alone before its certificate (it did on the units that do not lead: a run saw
// only ca.crl and the pending key), and says what changed.
func TestOnChangeSeesTheWholeSetUnderUp(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	config := fileWriter(t, dir)("tlsrelay.yaml", `certificate:
  output: {formats: [bundle]}
  on_change: 'cd "$TLSRELAY_OUTPUT_DIR" && echo "$TLSRELAY_UNIT changed=[$TLSRELAY_CHANGED] present=[$(ls | tr "\n" " ")]" >> `+runs+`'
`)
	if r := run(t, "up", "--config", config, "--dir", filepath.Join(dir, "up"), "--units", "4"); r.code != 0 {
		t.Fatalf("up: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		unit, rest, _ := strings.Cut(line, " ")
		present := rest[strings.Index(rest, "present="):]
		for _, want := range []string{"tls.key", "tls.crt", "ca.crt", "bundle.pem"} {
			if !strings.Contains(present, want) {
				t.Errorf("%s's on_change ran before %s was in place: %s", unit, want, line)
			}
		}
		if !seen[unit] && !strings.Contains(rest, "tls.crt") {
			t.Errorf("%s's first on_change does not name tls.crt as changed: %s", unit, line)
		}
		seen[unit] = true
	}
	if len(seen) != 4 {
		t.Errorf("on_change ran for %d units, want 4:\n%s", len(seen), b)
	}
}
