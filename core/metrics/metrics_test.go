package metrics

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNilMetricsAreSafe(t *testing.T) {
	var m *Metrics
	m.Signed(time.Millisecond)
	m.Renewed()
	m.Rejected("key")
	m.PluginRestarted("cfssl")
	m.PluginIdleStopped("cfssl")
	m.Expires("db/0", time.Now(), time.Now())
	m.Leading("db/0", true)
	m.UnitError("db/0", true)
	m.WatchLag(time.Millisecond)
	m.SecretFetched("lb", "ok")
	m.OnChangeRan("ok")
	m.Rotation("db/0", true, 1, 1)
}

// The leader reports the units a rotation waits for and those it went on without; a
// unit that stops leading takes its series away.
func TestRotationUnits(t *testing.T) {
	m := New()
	m.Rotation("db/0", true, 2, 1)
	m.Rotation("db/1", false, 0, 0)
	if got := testutil.ToFloat64(m.rotationUnits.WithLabelValues("db/0", "waiting")); got != 2 {
		t.Errorf("waiting = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.rotationUnits.WithLabelValues("db/0", "untrusted")); got != 1 {
		t.Errorf("untrusted = %v, want 1", got)
	}
	m.Rotation("db/0", false, 0, 0)
	if n := testutil.CollectAndCount(m.rotationUnits); n != 0 {
		t.Errorf("%d series after db/0 stopped leading, want 0", n)
	}
}

func TestCountersAndExpiry(t *testing.T) {
	m := New()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.expiry.now = func() time.Time { return now }
	m.Signed(3 * time.Millisecond)
	m.Signed(5 * time.Millisecond)
	m.Rejected("held")
	m.SecretFetched("lb", "ok")
	m.SecretFetched("lb", "permission denied")
	m.SecretFetched("lb", "permission denied")
	m.Expires("db/0", now.Add(90*time.Second), now.Add(-30*time.Second)) // its renewal is overdue
	m.Expires("db/1", now.Add(time.Hour), now.Add(time.Minute))
	m.Expires("db/1", time.Time{}, time.Time{}) // db/1 lost its certificate: its series goes

	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"issued", testutil.ToFloat64(m.issued), 2},
		{"held rejections", testutil.ToFloat64(m.rejections.WithLabelValues("held")), 1},
		{"secret fetches denied", testutil.ToFloat64(m.secretFetches.WithLabelValues("lb", "permission denied")), 2},
		{"sign latency samples", float64(testutil.CollectAndCount(m.signSeconds)), 1}, // one histogram series
		{"expiry and renewal series", float64(testutil.CollectAndCount(m.expiry)), 2},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	want := `
# HELP tlsrelay_certificate_expiry_seconds Seconds until the unit's installed certificate expires (negative: expired).
# TYPE tlsrelay_certificate_expiry_seconds gauge
tlsrelay_certificate_expiry_seconds{unit="db/0"} 90
# HELP tlsrelay_certificate_renewal_seconds Seconds until the unit renews its installed certificate (certificate.renew_at, less its jitter); negative: the renewal is overdue.
# TYPE tlsrelay_certificate_renewal_seconds gauge
tlsrelay_certificate_renewal_seconds{unit="db/0"} -30
`
	if err := testutil.CollectAndCompare(m.expiry, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	now = now.Add(2 * time.Minute) // the scrape's time counts, not the last report's
	want = strings.Replace(strings.Replace(want, "} -30", "} -150", 1), "} 90", "} -30", 1)
	if err := testutil.CollectAndCompare(m.expiry, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestHealthz(t *testing.T) {
	m := New()
	tests := []struct {
		ok     bool
		status int
	}{{true, http.StatusOK}, {false, http.StatusServiceUnavailable}}
	for _, tt := range tests {
		srv, err := m.Listen("127.0.0.1:0", func() (bool, string) { return tt.ok, "db/0: detail" })
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + srv.Addr() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || strings.TrimSpace(string(body)) != "db/0: detail" {
			t.Errorf("healthy=%v: /healthz = %d %q, want %d with the detail", tt.ok, resp.StatusCode, body, tt.status)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}
