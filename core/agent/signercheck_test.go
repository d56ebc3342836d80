package agent

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/metrics"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// sloppySigner signs as the signer it wraps (the real cfssl backend), then spoils the
// certificate before it answers, as a careless or hostile signer would.
type sloppySigner struct {
	sdk.Backend
	spoil func(*x509.Certificate)
}

func (s sloppySigner) SignCSR(ctx context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	good, err := s.Backend.SignCSR(ctx, req)
	if err != nil {
		return good, err
	}
	ca, err := s.Backend.ExportCA(ctx)
	if err != nil {
		return sdk.Certificate{}, err
	}
	cas, _ := certutil.ParseCertificates(ca.CertPEM)
	key, _ := certutil.ParsePrivateKeyPEM(ca.Key)
	leaves, _ := certutil.ParseCertificates(good.ChainPEM)
	tmpl := *leaves[0]
	tmpl.RawSubject = nil // built from the fields, which spoil may change
	s.spoil(&tmpl)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, cas[0], leaves[0].PublicKey, key)
	if err != nil {
		return sdk.Certificate{}, err
	}
	return sdk.Certificate{ChainPEM: certutil.CertPEM(der)}, nil
}

// A leader publishes nothing its signer returns that differs from what the policy
// approved: each answer is put on record (the audit trail, a metric naming the signer)
// and counts as the signer's failure with the CSR, which is refused, with the reason,
// after protocol.SignAttempts. Each case is a way Octavia's LocalCertGenerator, or a
// hostile signer, differs.
func TestLeaderPublishesOnlyWhatWasApproved(t *testing.T) {
	for _, tt := range []struct {
		name   string
		spoil  func(*x509.Certificate)
		reason string
	}{
		{"another unit's name added", func(c *x509.Certificate) { c.DNSNames = append(c.DNSNames, "db-1") }, "DNS names"},
		{"both usages whatever the profile", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}, "extended key usages"},
		{"the CSR's SANs dropped", func(c *x509.Certificate) { c.DNSNames = nil }, "DNS names"},
		{"an organisation in the subject", func(c *x509.Certificate) {
			c.Subject.Organization = []string{"Acme"}
		}, "subject"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			root := t.TempDir()
			store := relation.NewMemory(protocol.Schema())
			m, err := store.Join(ctx, "db/0", relation.JoinOptions{LeaderEligible: true})
			if err != nil {
				t.Fatal(err)
			}
			trail, err := audit.Open(audit.Options{Path: filepath.Join(root, "audit.log"), Relation: "r", Unit: "db/0"})
			if err != nil {
				t.Fatal(err)
			}
			met := metrics.New()
			runAgent(t, Options{Member: m, Backends: inProcess{sloppySigner{newCfssl(t, filepath.Join(root, "ca")), tt.spoil}},
				Certificate: testCert, Policy: testPolicy, Dir: filepath.Join(root, "db-0"), Audit: trail, Metrics: met, SignerName: "sloppy"})

			obs, _ := store.Observe(ctx)
			var r protocol.Rejection
			deadline := time.Now().Add(20 * time.Second)
			for {
				snap, err := obs.Snapshot(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if cert := snap.LeaderData[protocol.SignedCertificateKey("db/0")]; cert != "" {
					t.Fatalf("the leader published what its signer returned: %.80s", cert)
				}
				var ok bool
				if r, ok = protocol.DecodeRejection(snap.LeaderData[protocol.RejectionKey("db/0")]); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the CSR was neither published nor refused")
				}
				<-snap.Changed
			}
			if r.Rule != protocol.RuleSigner || !strings.Contains(r.Reason, tt.reason) {
				t.Fatalf("refused by rule %q: %s; want rule %q naming %q", r.Rule, r.Reason, protocol.RuleSigner, tt.reason)
			}
			events, _, err := audit.Read(filepath.Join(root, "audit.log"), audit.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			refused, signed := 0, 0
			for _, e := range events {
				switch e.Event {
				case audit.EventSignerRefused:
					if e.Unit != "db/0" || e.Signer != "sloppy" || e.Serial == "" || !strings.Contains(e.Reason, tt.reason) {
						t.Errorf("audit record %+v, want the unit, the signer, the serial and the reason", e)
					}
					refused++
				case audit.EventSigned:
					signed++
				}
			}
			if refused != protocol.SignAttempts || signed != 0 {
				t.Errorf("the audit trail records %d refused answers and %d signings, want %d and 0", refused, signed, protocol.SignAttempts)
			}
			want := fmt.Sprintf("# HELP tlsrelay_signer_answers_refused_total %s\n# TYPE tlsrelay_signer_answers_refused_total counter\n"+
				"tlsrelay_signer_answers_refused_total{signer=\"sloppy\",what=\"certificate\"} %d\n", refusedHelp, protocol.SignAttempts)
			if err := testutil.GatherAndCompare(met.Registry(), strings.NewReader(want), "tlsrelay_signer_answers_refused_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

const refusedHelp = "Certificates and CRLs a signer returned that this unit, leading, did not publish: not what the policy approved, or signed by another CA."

// paddingSigner signs CRLs as the signer it wraps, with one serial more than asked.
type paddingSigner struct{ sdk.Backend }

func (s paddingSigner) SignCRL(ctx context.Context, req sdk.CRLRequest) (sdk.CRL, error) {
	req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: big.NewInt(0xbad), RevokedAt: req.ThisUpdate})
	return sdk.SignCRL(ctx, s.Backend, req)
}

// A CRL the signer returns that differs from the one asked for is not published: it is
// counted against the signer, and no unit installs it.
func TestLeaderPublishesOnlyTheCRLAskedFor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := t.TempDir()
	store := relation.NewMemory(protocol.Schema())
	m, err := store.Join(ctx, "db/0", relation.JoinOptions{LeaderEligible: true})
	if err != nil {
		t.Fatal(err)
	}
	met := metrics.New()
	runAgent(t, Options{Member: m, Backends: inProcess{paddingSigner{newCfssl(t, filepath.Join(root, "ca"))}},
		Certificate: testCert, Policy: testPolicy, Dir: filepath.Join(root, "db-0"), Metrics: met, SignerName: "padding"})

	obs, err := store.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refused := func() float64 {
		mfs, err := met.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if mf.GetName() == "tlsrelay_signer_answers_refused_total" && labels["signer"] == "padding" && labels["what"] == "crl" {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	// Each poll checks what is published; refusals only grow.
	for deadline := time.Now().Add(20 * time.Second); refused() == 0; time.Sleep(20 * time.Millisecond) {
		snap, err := obs.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if crl := snap.LeaderData[protocol.KeyCRL]; crl != "" {
			t.Fatalf("the leader published a CRL listing a serial nothing revoked: %.80s", crl)
		}
		if time.Now().After(deadline) {
			t.Fatal("the signer's CRL was neither published nor refused")
		}
	}
	snap, err := obs.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if crl := snap.LeaderData[protocol.KeyCRL]; crl != "" {
		t.Fatalf("the leader published a CRL it refused: %.80s", crl)
	}
}
