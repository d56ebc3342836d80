package main

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/core/relation/relationtest"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// An agent as an operator runs it: JSON logs, /metrics and /healthz, an on_change that
// fails every time, a hostile peer, a broken config sent with SIGHUP, then a good one.
// The failing on_change is reported (log, metric, status) and the unit goes on renewing
// its one-minute certificate; the broken config is refused and the running one kept; the
// good one takes effect; /metrics parses with Prometheus' own text parser throughout.
func TestAgentMetricsHealthReloadAndFailingOnChange(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	trail := filepath.Join(t.TempDir(), "audit.jsonl")
	config := func(extra string) string {
		return fmt.Sprintf(`relation:
  name: ops
  store: etcd
  etcd: {endpoints: [%q], lease_ttl: 4s}
ca: {revoke_departed_after: 0s}
audit: {path: %s}
certificate:
  validity: 1m
  renew_at: 0.2
  renew_jitter: 0.01
  on_change: "echo the service would not reload >&2; exit 3"
%s`, srv.Endpoint(), trail, extra)
	}
	ag := newAgentsWith(t, config(""), false)
	ag.startArgs("web/0", []string{"--metrics-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"})
	base := metricsURL(t, ag, "web/0")
	obs := observe(t, etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint()}, Relation: "ops"})

	awaitHealthy(t, base)
	first := awaitObs(t, obs, "web/0 to hold a certificate and report on_change's failure", time.Minute, func(s relation.Snapshot) bool {
		return available(s, "web/0") && strings.Contains(s.Units["web/0"][protocol.KeyError], "on_change:")
	})
	if e := first.Units["web/0"][protocol.KeyError]; !strings.Contains(e, "exit status 3") || !strings.Contains(e, "would not reload") {
		t.Errorf("status error = %q, want on_change's exit status and last line", e)
	}

	// Renewal goes on while on_change fails: two more certificates, each installed.
	serials := map[string]bool{first.Units["web/0"][protocol.KeySerial]: true}
	awaitObs(t, obs, "two renewals with on_change failing", 2*time.Minute, func(s relation.Snapshot) bool {
		if available(s, "web/0") {
			serials[s.Units["web/0"][protocol.KeySerial]] = true
		}
		return len(serials) >= 3
	})
	m := scrape(t, base)
	if got := counter(m, "tlsrelay_renewals_total", nil); got < 2 {
		t.Errorf("tlsrelay_renewals_total = %v, want at least 2", got)
	}
	if got := counter(m, "tlsrelay_on_change_runs_total", map[string]string{"result": "failed"}); got < 3 {
		t.Errorf(`on_change runs{result="failed"} = %v, want at least 3 (one per certificate)`, got)
	}
	if got := counter(m, "tlsrelay_certificates_issued_total", nil); got < 3 {
		t.Errorf("tlsrelay_certificates_issued_total = %v, want at least 3", got)
	}
	if h := histogram(m, "tlsrelay_sign_duration_seconds"); h.GetSampleCount() < 3 || h.GetSampleSum() <= 0 {
		t.Errorf("sign latency histogram: %d samples summing to %vs, want 3 or more, above 0", h.GetSampleCount(), h.GetSampleSum())
	}
	if h := histogram(m, "tlsrelay_relation_watch_lag_seconds"); h.GetSampleCount() == 0 {
		t.Error("relation watch lag: no samples")
	}
	if left := gauge(m, "tlsrelay_certificate_expiry_seconds", map[string]string{"unit": "web/0"}); left <= 0 || left > 60 {
		t.Errorf("seconds until expiry = %v, want within (0, 60] for a one-minute certificate", left)
	}
	if gauge(m, "process_resident_memory_bytes", nil) <= 0 {
		t.Error("process_resident_memory_bytes missing")
	}
	// What the alert rules and the dashboard read (configs/prometheus, configs/grafana):
	// the one unit leads, reports on_change's failure as an error, and renews before expiry.
	if got := gauge(m, "tlsrelay_leader", map[string]string{"unit": "web/0"}); got != 1 {
		t.Errorf("tlsrelay_leader{unit=web/0} = %v, want 1", got)
	}
	if got := gauge(m, "tlsrelay_unit_error", map[string]string{"unit": "web/0"}); got != 1 {
		t.Errorf("tlsrelay_unit_error{unit=web/0} = %v, want 1 while on_change fails", got)
	}
	left := gauge(m, "tlsrelay_certificate_expiry_seconds", map[string]string{"unit": "web/0"})
	if renew := gauge(m, "tlsrelay_certificate_renewal_seconds", map[string]string{"unit": "web/0"}); renew >= left || renew < -60 {
		t.Errorf("seconds until renewal = %v, want below the %v until expiry", renew, left)
	}
	if q, size := gauge(m, "tlsrelay_etcd_quota_bytes", map[string]string{"unit": "web/0"}), gauge(m, "tlsrelay_etcd_db_size_bytes", map[string]string{"unit": "web/0"}); q != 2<<30 || size <= 0 {
		t.Errorf("the leader's etcd gauges: quota %v, database %v bytes", q, size)
	}
	lintMetrics(t, base)
	proveMonitoring(t, base)

	// A peer that asks for web/0's name is refused, and the refusal counted by rule.
	rogue := relationtest.Join(t, openEtcd(t, srv.Endpoint(), "ops"), "web/9", false)
	csr := pkitest.MakeCSR(t, pkitest.Request{Subject: pkix.Name{CommonName: "web-9"}, DNS: []string{"web-0"}})
	if err := rogue.SetUnitData(context.Background(), map[string]string{protocol.KeyCSR: csr, protocol.KeyProfile: "peer"}); err != nil {
		t.Fatal(err)
	}
	awaitObs(t, obs, "web/9's CSR rejected", 30*time.Second, func(s relation.Snapshot) bool {
		r, ok := protocol.DecodeRejection(s.LeaderData[protocol.RejectionKey("web/9")])
		return ok && r.Rule == "reserved"
	})
	if got := counter(scrape(t, base), "tlsrelay_csr_rejections_total", map[string]string{"rule": "reserved"}); got != 1 {
		t.Errorf(`rejections{rule="reserved"} = %v, want 1`, got)
	}
	// On the audit trail too, before it was published: the rule, the reason, the CSR.
	rejected, _, err := audit.Read(trail, audit.Filter{Unit: "web/9"})
	if err != nil || len(rejected) != 1 || rejected[0].Event != audit.EventRejected || rejected[0].Rule != "reserved" ||
		rejected[0].CSRSHA256 != protocol.Digest(csr) || !strings.Contains(rejected[0].Reason, `"web-0"`) {
		t.Errorf("the audit trail of web/9: %+v, %v; want one rejected record, rule reserved, its CSR's digest", rejected, err)
	}

	// A config that does not parse is refused on SIGHUP, naming the file; the agent runs on.
	if err := os.WriteFile(ag.config, []byte("certificate: {validity: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ag.signalAgent("web/0", syscall.SIGHUP)
	awaitLog(t, ag, "web/0", "the config was not reloaded")
	if !strings.Contains(lineWith(ag.logOf("web/0"), "the config was not reloaded"), ag.config) {
		t.Errorf("the refusal does not name %s:\n%s", ag.config, lineWith(ag.logOf("web/0"), "the config was not reloaded"))
	}
	awaitHealthy(t, base)

	// A good one takes effect: a new SAN, and the on_change that now works.
	good := config(`  sans: ["web.ops.internal"]
policy: {shared_sans: ["web.ops.internal"]}
`)
	good = strings.Replace(good, `"echo the service would not reload >&2; exit 3"`, `"true"`, 1)
	if err := os.WriteFile(ag.config, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	ag.signalAgent("web/0", syscall.SIGHUP)
	deadline := time.Now().Add(time.Minute)
	for !slices.Contains(mustReadCert(t, ag.unitDir("web/0")+"/tls.crt").DNSNames, "web.ops.internal") {
		if time.Now().After(deadline) {
			t.Fatal("the reloaded SAN never reached tls.crt")
		}
		time.Sleep(200 * time.Millisecond)
	}
	awaitObs(t, obs, "on_change's failure cleared", 30*time.Second, func(s relation.Snapshot) bool {
		return available(s, "web/0") && s.Units["web/0"][protocol.KeyError] == ""
	})
	// The reloaded agent starts with no failure on record and runs the new on_change
	// after installing the files, so the run is awaited by its log line, not assumed.
	awaitLog(t, ag, "web/0", "on_change ran")
	if got := counter(scrape(t, base), "tlsrelay_on_change_runs_total", map[string]string{"result": "ok"}); got < 1 {
		t.Errorf(`on_change runs{result="ok"} = %v after the reload, want at least 1`, got)
	}

	// A unit that vanishes (kill -9: its lease expires, no note left) is revoked: web/0
	// writes a ca.crl, signed by the group's CA through the cfssl plugin, that lists
	// web/1's serial.
	ag.start("web/1")
	joined := awaitObs(t, obs, "web/1 to hold a certificate", time.Minute, func(s relation.Snapshot) bool { return available(s, "web/1") })
	gone := joined.Units["web/1"][protocol.KeySerial]
	ag.signal("web/1", syscall.SIGKILL)
	deadline = time.Now().Add(30 * time.Second)
	for {
		crl, err := certutil.ParseCRL(mustRead(t, ag.unitDir("web/0")+"/ca.crl"))
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(certutil.Revoked(crl), func(s *big.Int) bool { return s.Text(16) == gone }) {
			if err := crl.CheckSignatureFrom(mustReadCert(t, ag.unitDir("web/0")+"/ca.crt")); err != nil {
				t.Fatalf("ca.crl is not the group CA's: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web/0's ca.crl never listed web/1's serial %s", gone)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every line the agent logged is one JSON object (--log-format json), plugins' included.
	ag.signal("web/0", syscall.SIGTERM)
	for _, line := range strings.Split(strings.TrimSpace(ag.logOf("web/0")), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["@message"] == nil {
			t.Fatalf("a log line that is not an hclog JSON object: %q", line)
		}
	}
}

// metricsURL waits for the agent to log where it serves /metrics.
func metricsURL(t *testing.T, ag *agents, unit string) string {
	t.Helper()
	re := regexp.MustCompile(`"addr":"(http://127\.0\.0\.1:[0-9]+)"`)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(ag.logOf(unit)); m != nil {
			return m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never logged its metrics address:\n%s", unit, ag.logOf(unit))
	return ""
}

func awaitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/healthz never answered 200; last: %s", last)
}

// scrape fetches /metrics and parses it with Prometheus' text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return families
}

// find returns the metric of family name whose labels include labels, or nil.
func find(m map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := m[name]
	if f == nil {
		return nil
	}
	for _, metric := range f.Metric {
		have := map[string]string{}
		for _, l := range metric.Label {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if match {
			return metric
		}
	}
	return nil
}

func counter(m map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	return find(m, name, labels).GetCounter().GetValue()
}

// lintMetrics has Prometheus' own linter (promtool check metrics) read the agent's
// /metrics as a Prometheus server would scrape it.
func lintMetrics(t *testing.T, base string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = resp.Body
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func gauge(m map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	return find(m, name, labels).GetGauge().GetValue()
}

func histogram(m map[string]*dto.MetricFamily, name string) *dto.Histogram {
	return find(m, name, nil).GetHistogram()
}

func awaitLog(t *testing.T, ag *agents, unit, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(ag.logOf(unit), text) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never logged %q", unit, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lineWith(log, text string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, text) {
			return line
		}
	}
	return ""
}

func openEtcd(t *testing.T, endpoint, rel string) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: []string{endpoint}, Relation: rel})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
