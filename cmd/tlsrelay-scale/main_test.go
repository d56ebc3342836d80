package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/app/scale"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
)

func TestMain(m *testing.M) {
	// The benchmark runs its etcd as this binary again (scale.ServeEtcd).
	if len(os.Args) == 4 && os.Args[1] == scale.ServeEtcd {
		if err := scale.ServeEmbedded(context.Background(), os.Args[2], os.Args[3]); err != nil {
			os.Exit(1)
		}
		return
	}
	testbin.Main(m)
}

// TestScaleBenchmarkRunsEveryScenario runs the benchmark small, with real agents and
// a real etcd, and checks what it reports: every unit certified, a new leader signing
// after the old one's kill, a rotation with no failed handshake, and a CRL listing
// every departed unit held by every other unit.
func TestScaleBenchmarkRunsEveryScenario(t *testing.T) {
	bin := testbin.Build(t, testbin.Tlsrelay)
	dir := t.TempDir()
	var out bytes.Buffer
	cmd := newCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--units", "24", "--leaders", "2", "--tlsrelay", bin, "--dir", filepath.Join(dir, "run"),
		"--scenarios", "failover,rotate,revoke", "--waves", "4,3", "--lease-ttl", "5s", "--revoke-after", "2s", "--pairs", "4"})
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("tlsrelay-scale: %v\n%s", err, out.String())
	}
	report := out.String()
	t.Log(report)
	for _, want := range []string{
		`converge: 24 units hold certificates after`,
		`failover: killed ctl/0 \(-9, with its plugins\); ctl/1 elected after .*; the new unit late/24 certified after`,
		`rotate: 25 units hold the new CA's certificates and trust only it after .*; phases: \[trust at`,
		`handshakes throughout: [1-9][0-9]* completed, 0 failed \[\]`,
		`revoke wave 1: 4 units departed in .*held by all 21 others`,
		`revoke wave 2: 3 units departed in .*held by all 18 others`,
		`leases lost and joined again: 0`,
	} {
		if !regexp.MustCompile(want).MatchString(report) {
			t.Errorf("the report has no line matching %q", want)
		}
	}
	// The second wave's CRL lists the first wave's certificates too: after the rotation
	// each departed unit held two (the old CA's, revoked as well until it expires).
	m := regexp.MustCompile(`CRL: (\d+) entries`).FindAllStringSubmatch(report, -1)
	if len(m) != 2 {
		t.Fatalf("want two CRL lines, got %d", len(m))
	}
	first, _ := strconv.Atoi(m[0][1])
	second, _ := strconv.Atoi(m[1][1])
	if first < 4 || second < first+3 {
		t.Errorf("CRL entries %d then %d: want at least 4, then 3 more", first, second)
	}
	if strings.Contains(report, "joining again failed") {
		t.Errorf("a unit failed to join again")
	}
}
