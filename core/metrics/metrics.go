// Package metrics is what a unit tells Prometheus: certificates it signed and how long
// signing took, renewals, CSRs refused and why, plugin restarts, how long its certificate
// has left, how far its relation watch lags, secret fetches and on_change runs by
// outcome. Each Metrics has its own registry (no global state: tests and `up` run many
// units in one process). Every method is safe on a nil *Metrics, so code that reports
// needs no "metrics enabled?" branches.
package metrics

import (
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds one unit's (one process's) collectors.
type Metrics struct {
	reg *prometheus.Registry

	issued         prometheus.Counter
	signSeconds    prometheus.Histogram
	renewals       prometheus.Counter
	rejections     *prometheus.CounterVec
	pluginRestarts *prometheus.CounterVec
	pluginIdle     *prometheus.CounterVec
	expiry         *expiryCollector
	watchLag       prometheus.Histogram
	secretFetches  *prometheus.CounterVec
	onChange       *prometheus.CounterVec
	rotationUnits  *prometheus.GaugeVec
	clockSkew      *prometheus.GaugeVec
	oversized      *prometheus.GaugeVec
	noisy          *prometheus.GaugeVec
	blocked        *prometheus.GaugeVec
	noCRL          *prometheus.GaugeVec
	leading        *prometheus.GaugeVec
	unitError      *prometheus.GaugeVec
	signerRefused  *prometheus.CounterVec
	notReissued    prometheus.Counter
	etcdDB         map[string]*prometheus.GaugeVec // by metric name, the leader's view of etcd
	own            []prometheus.Collector          // the collectors above, for Names
}

// New registers tlsrelay's collectors, and Go's and the process's, in a new registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		issued: prometheus.NewCounter(prometheus.CounterOpts{Name: "tlsrelay_certificates_issued_total",
			Help: "Certificates this unit signed for the group while it led."}),
		signSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tlsrelay_sign_duration_seconds",
			Help:    "Time the signer backend took to sign one CSR, plugin round trip included.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16)}), // 200µs to ~6.5s
		renewals: prometheus.NewCounter(prometheus.CounterOpts{Name: "tlsrelay_renewals_total",
			Help: "Certificates this unit installed in place of one it held."}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsrelay_csr_rejections_total",
			Help: "CSRs this unit refused while it led, by the rule that refused them (signer: the backend did)."},
			[]string{"rule"}),
		pluginRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsrelay_plugin_restarts_total",
			Help: "Backend plugin processes started again after one died or was killed."}, []string{"plugin"}),
		pluginIdle: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsrelay_plugin_idle_stops_total",
			Help: "Backend plugin processes stopped as no call used them for plugin_idle (started again on demand)."}, []string{"plugin"}),
		expiry: newExpiryCollector(),
		watchLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tlsrelay_relation_watch_lag_seconds",
			Help:    "Time from this unit's write to the relation until its watch delivered that write.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}), // 500µs to ~16s
		secretFetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsrelay_secret_fetches_total",
			Help: "Secret fetches through the secrets backend, by secret and result (ok, or the error's class)."},
			[]string{"secret", "result"}),
		rotationUnits: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsrelay_ca_rotation_units",
			Help: "Units a CA rotation waits for (kind waiting) and units its trust phase went on without (kind untrusted), as the leader sees them."},
			[]string{"unit", "kind"}),
		clockSkew: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsrelay_clock_skew_seconds",
			Help: "How far the certificate signed for the unit starts after its clock's now: this host's clock or the leader's is wrong; 0 when none is seen."},
			[]string{"unit"}),
		oversized: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsrelay_bag_oversized",
			Help: "1 for each unit whose bag holds a value over its field's cap (not read), as the leader sees the relation."},
			[]string{"unit"}),
		noisy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsrelay_unit_writes_over_budget",
			Help: "Writes of its bag in a minute of each unit over its budget, as the leader sees the relation."},
			[]string{"unit"}),
		blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsrelay_ca_rotation_blocked",
			Help: "1 while the leading unit's CA rotation is due but cannot proceed (its signer cannot make a new CA); it signs on meanwhile."},
			[]string{"unit"}),
		noCRL: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsrelay_revocation_unsupported",
			Help: "1 while the leading unit's signer signs no CRL: departed units are recorded but not revoked."},
			[]string{"unit"}),
		leading: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsrelay_leader",
			Help: "1 while the unit leads its group (signs), else 0."}, []string{"unit"}),
		unitError: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsrelay_unit_error",
			Help: "1 while the unit reports an error in its status (a refused CSR, a leader that cannot sign, on_change failing, clock skew, a failing step), else 0."}, []string{"unit"}),
		signerRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsrelay_signer_answers_refused_total",
			Help: "Certificates and CRLs a signer returned that this unit, leading, did not publish: not what the policy approved, or signed by another CA."},
			[]string{"signer", "what"}),
		notReissued: prometheus.NewCounter(prometheus.CounterOpts{Name: "tlsrelay_ca_rotation_not_reissued_total",
			Help: "Certificates this unit, leading, revoked because a CA rotation's reissue phase ended (ca.rotation_reissue_timeout) without their unit."}),
		onChange: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsrelay_on_change_runs_total",
			Help: "Runs of certificate.on_change, by result: ok, failed or timeout."}, []string{"result"}),
	}
	m.etcdDB = map[string]*prometheus.GaugeVec{}
	for name, help := range etcdDBHelp {
		m.etcdDB[name] = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"unit"})
	}
	m.own = []prometheus.Collector{m.issued, m.signSeconds, m.renewals, m.rejections, m.pluginRestarts, m.pluginIdle, m.expiry,
		m.watchLag, m.secretFetches, m.onChange, m.rotationUnits, m.clockSkew, m.oversized, m.noisy, m.blocked, m.noCRL,
		m.leading, m.unitError, m.signerRefused, m.notReissued}
	for _, g := range m.etcdDB {
		m.own = append(m.own, g)
	}
	m.reg.MustRegister(m.own...)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Names lists the names of tlsrelay's own metrics, whether or not they hold a series yet
// (a counter by label has none until counted): what alert rules and dashboards may use.
func Names() []string {
	m := New()
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range m.own {
			c.Describe(ch)
		}
		close(ch)
	}()
	var names []string
	for d := range ch {
		if match := fqName.FindStringSubmatch(d.String()); match != nil {
			names = append(names, match[1])
		}
	}
	slices.Sort(names)
	return names
}

// fqName finds a metric's name in its description (prometheus.Desc has no getter).
var fqName = regexp.MustCompile(`fqName: "([a-zA-Z_:][a-zA-Z0-9_:]*)"`)

// Registry is where the collectors are registered (to serve or gather them).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Signed counts one certificate signed, and how long the signer took.
func (m *Metrics) Signed(took time.Duration) {
	if m == nil {
		return
	}
	m.issued.Inc()
	m.signSeconds.Observe(took.Seconds())
}

// Renewed counts one certificate installed in place of another.
func (m *Metrics) Renewed() {
	if m != nil {
		m.renewals.Inc()
	}
}

// Rejected counts one CSR refused, by rule.
func (m *Metrics) Rejected(rule string) {
	if m != nil {
		m.rejections.WithLabelValues(rule).Inc()
	}
}

// SignerRefused counts one answer of the signer (what: certificate or crl) not published.
func (m *Metrics) SignerRefused(signer, what string) {
	if m != nil {
		m.signerRefused.WithLabelValues(signer, what).Inc()
	}
}

// NotReissued counts certificates revoked because a rotation ended without their unit.
func (m *Metrics) NotReissued(n int) {
	if m != nil && n > 0 {
		m.notReissued.Add(float64(n))
	}
}

// PluginRestarted counts one restart of a plugin.
func (m *Metrics) PluginRestarted(plugin string) {
	if m != nil {
		m.pluginRestarts.WithLabelValues(plugin).Inc()
	}
}

// PluginIdleStopped counts one plugin stopped for idleness (plugin_idle).
func (m *Metrics) PluginIdleStopped(plugin string) {
	if m != nil {
		m.pluginIdle.WithLabelValues(plugin).Inc()
	}
}

// Expires records when the unit's installed certificate expires and when the unit means
// to renew it; a zero notAfter (no certificate) removes the unit's series.
func (m *Metrics) Expires(unit string, notAfter, renewAt time.Time) {
	if m != nil {
		m.expiry.set(unit, notAfter, renewAt)
	}
}

// etcdDBHelp describes the etcd gauges the leading unit reports (EtcdDB).
var etcdDBHelp = map[string]string{
	"tlsrelay_etcd_db_size_bytes":        "Size of etcd's database file, as the leading unit last read it from etcd's maintenance API.",
	"tlsrelay_etcd_db_size_in_use_bytes": "Bytes of etcd's database holding live data (defrag frees the rest), as the leading unit last read them.",
	"tlsrelay_etcd_quota_bytes":          "The etcd cluster's --quota-backend-bytes, as configured in relation.etcd.quota_bytes.",
	"tlsrelay_etcd_revision":             "etcd's current revision, as the leading unit last read it.",
	"tlsrelay_etcd_compact_revision":     "The revision etcd's history is compacted up to (0: never compacted), as the leading unit last read it.",
}

// EtcdDB records, for the leading unit, etcd's database size, quota, revision and
// compaction; leading false removes the series.
func (m *Metrics) EtcdDB(unit string, leading bool, size, inUse, quota, revision, compacted int64) {
	if m == nil {
		return
	}
	values := map[string]int64{"tlsrelay_etcd_db_size_bytes": size, "tlsrelay_etcd_db_size_in_use_bytes": inUse,
		"tlsrelay_etcd_quota_bytes": quota, "tlsrelay_etcd_revision": revision, "tlsrelay_etcd_compact_revision": compacted}
	for name, g := range m.etcdDB {
		if !leading {
			g.DeleteLabelValues(unit)
			continue
		}
		g.WithLabelValues(unit).Set(float64(values[name]))
	}
}

// Leading records whether unit leads its group.
func (m *Metrics) Leading(unit string, leading bool) {
	if m != nil {
		setFlag(m.leading, unit, leading)
	}
}

// UnitError records whether unit reports an error in its status.
func (m *Metrics) UnitError(unit string, failing bool) {
	if m != nil {
		setFlag(m.unitError, unit, failing)
	}
}

// WatchLag records the delay of one write's echo through the relation watch.
func (m *Metrics) WatchLag(d time.Duration) {
	if m != nil {
		m.watchLag.Observe(d.Seconds())
	}
}

// SecretFetched counts one fetch of a secret, by result.
func (m *Metrics) SecretFetched(secret, result string) {
	if m != nil {
		m.secretFetches.WithLabelValues(secret, result).Inc()
	}
}

// OnChangeRan counts one run of on_change, by result.
func (m *Metrics) OnChangeRan(result string) {
	if m != nil {
		m.onChange.WithLabelValues(result).Inc()
	}
}

// Rotation records, for the leading unit, how many units a CA rotation waits for and
// how many its trust phase went on without; leading false removes the unit's series.
func (m *Metrics) Rotation(unit string, leading bool, waiting, untrusted int) {
	if m == nil {
		return
	}
	if !leading {
		m.rotationUnits.DeleteLabelValues(unit, "waiting")
		m.rotationUnits.DeleteLabelValues(unit, "untrusted")
		return
	}
	m.rotationUnits.WithLabelValues(unit, "waiting").Set(float64(waiting))
	m.rotationUnits.WithLabelValues(unit, "untrusted").Set(float64(untrusted))
}

// CARotationBlocked records, for the leading unit, whether a CA rotation that is due
// cannot proceed.
func (m *Metrics) CARotationBlocked(unit string, blocked bool) {
	if m != nil {
		setFlag(m.blocked, unit, blocked)
	}
}

// RevocationUnsupported records whether the leading unit's signer signs no CRL.
func (m *Metrics) RevocationUnsupported(unit string, unsupported bool) {
	if m != nil {
		setFlag(m.noCRL, unit, unsupported)
	}
}

// setFlag sets unit's series of a yes-or-no gauge to 1 or 0.
func setFlag(g *prometheus.GaugeVec, unit string, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	g.WithLabelValues(unit).Set(v)
}

// Oversized records the units whose bag holds a value over its cap (relation.Snapshot.Oversized),
// as the leader sees them; nil (not leading) clears them.
func (m *Metrics) Oversized(units map[string]string) {
	if m == nil {
		return
	}
	m.oversized.Reset()
	for unit := range units {
		m.oversized.WithLabelValues(unit).Set(1)
	}
}

// Noisy records the units over their write budget (relation.Snapshot.Noisy), with their
// writes in a minute, as the leader sees them.
func (m *Metrics) Noisy(units map[string]int) {
	if m == nil {
		return
	}
	m.noisy.Reset()
	for unit, n := range units {
		m.noisy.WithLabelValues(unit).Set(float64(n))
	}
}

// ClockSkew records how far the certificate signed for unit starts after its clock's now
// (protocol.Decision.ClockSkew).
func (m *Metrics) ClockSkew(unit string, skew time.Duration) {
	if m != nil {
		m.clockSkew.WithLabelValues(unit).Set(skew.Seconds())
	}
}

// expiryCollector reports seconds until expiry, and until the planned renewal, as of
// the scrape, not as of the last time the agent looked: an idle agent sleeps for up to
// an hour. A renewal in the past that has not happened is what an alert looks for.
type expiryCollector struct {
	expiry, renewal *prometheus.Desc
	now             func() time.Time

	mu    sync.Mutex
	times map[string][2]time.Time // unit: notAfter, renewAt
}

func newExpiryCollector() *expiryCollector {
	return &expiryCollector{
		expiry: prometheus.NewDesc("tlsrelay_certificate_expiry_seconds",
			"Seconds until the unit's installed certificate expires (negative: expired).", []string{"unit"}, nil),
		renewal: prometheus.NewDesc("tlsrelay_certificate_renewal_seconds",
			"Seconds until the unit renews its installed certificate (certificate.renew_at, less its jitter); negative: the renewal is overdue.", []string{"unit"}, nil),
		now:   time.Now,
		times: map[string][2]time.Time{},
	}
}

func (c *expiryCollector) set(unit string, notAfter, renewAt time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if notAfter.IsZero() {
		delete(c.times, unit)
		return
	}
	c.times[unit] = [2]time.Time{notAfter, renewAt}
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.expiry; ch <- c.renewal }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for unit, t := range c.times {
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, t[0].Sub(now).Seconds(), unit)
		if !t[1].IsZero() {
			ch <- prometheus.MustNewConstMetric(c.renewal, prometheus.GaugeValue, t[1].Sub(now).Seconds(), unit)
		}
	}
}
