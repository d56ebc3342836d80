package configs_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tlsrelay/tlsrelay/core/metrics"
)

const (
	rulesFile     = "prometheus/tlsrelay.rules.yml"
	rulesTestFile = "prometheus/tlsrelay.rules_test.yml"
	dashboardFile = "grafana/tlsrelay.json"
)

// promtool is Debian's (package prometheus, installed by scripts/install-deps.sh).
func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is missing: run scripts/install-deps.sh (Debian package prometheus): %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The alert rules load, and every alert fires on the series of its test and stays quiet
// on the others (promtool test rules; each test starts quiet at 0m).
func TestAlertRules(t *testing.T) {
	promtool(t, ".", "check", "rules", rulesFile)
	out := promtool(t, "prometheus", "test", "rules", filepath.Base(rulesTestFile))
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
	// Every alert has a test that fires it.
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, rulesTestFile, &tests)
	fired := map[string]bool{}
	for _, tt := range tests.Tests {
		for _, a := range tt.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	for _, r := range rules(t) {
		if r.Alert != "" && !fired[r.Alert] {
			t.Errorf("alert %s has no test that fires it", r.Alert)
		}
		if r.Alert != "" && (r.Annotations["summary"] == "" || r.Annotations["description"] == "") {
			t.Errorf("alert %s lacks a summary or a description of what to check", r.Alert)
		}
	}
}

// Every dashboard query is PromQL that Prometheus parses (each checked by promtool as a
// recording rule, the template variables filled in), and every metric the rules and
// the dashboard name is one an agent exports.
func TestDashboardQueriesAndMetricNames(t *testing.T) {
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	var rec strings.Builder
	rec.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for j, target := range p.Targets {
			expr := strings.ReplaceAll(target.Expr, "$job", ".*")
			exprs = append(exprs, expr)
			fmt.Fprintf(&rec, "      - record: panel_%d_%d\n        expr: %q\n", i, j, expr)
		}
	}
	file := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(file, []byte(rec.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	promtool(t, ".", "check", "rules", file)

	for _, r := range rules(t) {
		exprs = append(exprs, r.Expr)
	}
	exported := metrics.Names()
	used := map[string]bool{}
	for _, expr := range exprs {
		for _, name := range metricName.FindAllString(expr, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if !slices.Contains(exported, base) {
				t.Errorf("%q names %s, which no agent exports (exported: %v)", expr, name, exported)
			}
			used[base] = true
		}
	}
	for _, want := range []string{"tlsrelay_certificate_expiry_seconds", "tlsrelay_leader", "tlsrelay_csr_rejections_total",
		"tlsrelay_sign_duration_seconds", "tlsrelay_relation_watch_lag_seconds", "tlsrelay_plugin_restarts_total"} {
		if !used[want] {
			t.Errorf("nothing shows %s", want)
		}
	}
}

var metricName = regexp.MustCompile(`tlsrelay_[a-z_]+`)

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Annotations map[string]string `yaml:"annotations"`
}

func rules(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, rulesFile, &f)
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no rules", rulesFile)
	}
	return out
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
