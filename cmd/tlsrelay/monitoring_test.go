package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proveMonitoring runs a real Prometheus (Debian's) on loopback, scraping a live agent
// at base with the alert rules of configs/prometheus loaded, and runs every query of
// the dashboard in configs/grafana through it: each must execute, and those over
// series an agent always has must return them; every alert rule must evaluate
// without error.
func proveMonitoring(t *testing.T, base string) {
	t.Helper()
	target := strings.TrimPrefix(base, "http://")
	rules, _ := filepath.Abs("../../configs/prometheus/tlsrelay.rules.yml")
	dir := t.TempDir()
	addr := freeLocalAddr(t)
	conf := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: tlsrelay
    static_configs: [{targets: [%q]}]
`, rules, target)), 0o600)
	logFile, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd := exec.Command("prometheus", "--config.file", conf, "--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("prometheus (Debian package prometheus, installed by scripts/install-deps.sh): %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus's log:\n%s", b)
		}
	})
	api := "http://" + addr + "/api/v1/"
	query := func(expr string) (int, error) {
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := getJSON(api+"query?query="+url.QueryEscape(expr), &r); err != nil {
			return 0, err
		}
		if r.Status != "success" {
			return 0, fmt.Errorf("%s", r.Error)
		}
		return len(r.Data.Result), nil
	}
	// A few scrapes in, so that rates have two samples.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if n, err := query(`count_over_time(tlsrelay_leader{job="tlsrelay"}[1m]) >= 4`); err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Prometheus never scraped the agent four times")
		}
	}

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("../../configs/grafana/tlsrelay.json")
	if err != nil || json.Unmarshal(b, &dash) != nil {
		t.Fatalf("the dashboard: %v", err)
	}
	// Panels over series a leading agent with a certificate always exports.
	always := map[string]bool{"Units holding a certificate": true, "Leader": true, "Units reporting an error": true,
		"Time to expiry per unit": true, "Time to renewal per unit": true, "etcd database against its quota": true,
		"Renewals overdue": true, "CA rotation": true, "Revocation off": true}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			expr := strings.ReplaceAll(target.Expr, "$job", "tlsrelay")
			n, err := query(expr)
			switch {
			case err != nil:
				t.Errorf("panel %q: %s: %v", p.Title, expr, err)
			case always[p.Title] && n == 0:
				t.Errorf("panel %q: %s returns nothing from a live agent", p.Title, expr)
			}
		}
	}

	// Every alert rule loaded and evaluated without error.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name           string `json:"name"`
						Health         string `json:"health"`
						LastError      string `json:"lastError"`
						LastEvaluation string `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := getJSON(api+"rules", &r); err != nil {
			t.Fatal(err)
		}
		evaluated, total := 0, 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				total++
				if rule.Health == "ok" {
					evaluated++
				} else if rule.Health == "err" {
					t.Errorf("alert %s does not evaluate: %s", rule.Name, rule.LastError)
				}
			}
		}
		if total > 0 && evaluated == total {
			return
		}
		if time.Now().After(deadline) || t.Failed() {
			t.Fatalf("%d of %d alert rules evaluated", evaluated, total)
		}
	}
}

func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
