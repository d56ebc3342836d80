package protocol

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// The leader publishes nothing a signer returns until it matches what the policy
// approved. Each case is a signer's answer to db/1's CSR for "db-1" and 10.0.0.1,
// profile server, a day; every way it may differ is caught and named.
func TestIssueCheck(t *testing.T) {
	ca, other := newCA(t, "group CA"), newCA(t, "other CA")
	key := newKey(t)
	csr := csrFor(t, key, "db/1", "db-1")
	act := SignCSR{Unit: "db/1", CSRPEM: csr, Profile: "server", Validity: day, CA: ca.PEM}
	issue := func(edit func(*x509.Certificate), signer testCA) string {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "db/1"}, DNSNames: []string{"db-1"},
			NotBefore: now.Add(-certutil.Backdate), NotAfter: now.Add(day), BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		pub := any(key.Public())
		if edit != nil {
			edit(tmpl)
			if tmpl.SubjectKeyId != nil { // marks "another key"
				pub, tmpl.SubjectKeyId = newKey(t).Public(), nil
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.Cert, pub, signer.Key)
		if err != nil {
			t.Fatal(err)
		}
		return string(certutil.CertPEM(der))
	}
	tests := []struct {
		name  string
		chain string
		want  string // "" passes
	}{
		{"what was asked", issue(nil, ca), ""},
		{"another unit's name added", issue(func(c *x509.Certificate) { c.DNSNames = append(c.DNSNames, "db-2") }, ca), "DNS names"},
		{"an IP added", issue(func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("10.0.0.2")} }, ca), "IP addresses"},
		{"its name dropped", issue(func(c *x509.Certificate) { c.DNSNames = nil }, ca), "DNS names"},
		{"both usages for a server (Octavia's LocalCertGenerator)", issue(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		}, ca), "extended key usages"},
		{"the CSR's organisation copied", issue(func(c *x509.Certificate) { c.Subject.Organization = []string{"Acme"} }, ca), "subject"},
		{"a CA", issue(func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign }, ca), "CA certificate"},
		{"another key", issue(func(c *x509.Certificate) { c.SubjectKeyId = []byte{1} }, ca), "not the CSR's"},
		{"ten times the validity", issue(func(c *x509.Certificate) { c.NotAfter = now.Add(10 * day) }, ca), "validity"},
		{"an hour less than the validity", issue(func(c *x509.Certificate) { c.NotAfter = now.Add(day - time.Hour) }, ca), "validity"},
		{"the signer's clock an hour behind the leader's", issue(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = c.NotBefore.Add(-time.Hour), c.NotAfter.Add(-time.Hour)
		}, ca), ""},
		{"valid only from tomorrow", issue(func(c *x509.Certificate) { c.NotBefore, c.NotAfter = now.Add(day), now.Add(2*day) }, ca), "the signer's clock or this host's is wrong"},
		{"the signer's clock two minutes ahead", issue(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = now.Add(2*time.Minute), now.Add(day+2*time.Minute)
		}, ca), ""},
		{"another CA", issue(nil, other), "another CA"},
		{"not a certificate", "<html>502 Bad Gateway</html>", "the signer's answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var check IssueCheck
			leaf, err := check.Check(act, tt.chain, now)
			switch {
			case tt.want == "" && (err != nil || leaf == nil):
				t.Fatalf("refused: %v", err)
			case tt.want == "":
			case err == nil:
				t.Fatalf("passed; want a refusal naming %q", tt.want)
			case tt.want == "another CA" && !errors.Is(err, ErrOtherCA):
				t.Fatalf("err = %v, want ErrOtherCA (the leader loads its signer's CA again)", err)
			case tt.want != "another CA" && (!strings.Contains(err.Error(), tt.want) || !sdk.IsCode(err, sdk.CodeInternal) || !strings.Contains(err.Error(), "db/1")):
				t.Fatalf("err = %v, want Internal naming db/1 and %q", err, tt.want)
			}
		})
	}
}

// A signing CA that is not valid at the leader's now is named with the leader's clock,
// as a clock that is wrong is the likely cause (a CA made on a host whose clock runs
// ahead).
func TestIssueCheckNamesTheClock(t *testing.T) {
	future := testCA{pkitest.NewCA(t, "CA of a clock ahead", now.Add(3*day))}
	key := newKey(t)
	act := SignCSR{Unit: "db/1", CSRPEM: csrFor(t, key, "db/1", "db-1"), Profile: "peer", Validity: day, CA: future.PEM}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(79), Subject: pkix.Name{CommonName: "db/1"}, DNSNames: []string{"db-1"},
		NotBefore: now.Add(-certutil.Backdate), NotAfter: now.Add(day), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, future.Cert, key.Public(), future.Key)
	if err != nil {
		t.Fatal(err)
	}
	chain := string(certutil.CertPEM(der))
	var check IssueCheck
	_, err = check.Check(act, chain, now)
	if err == nil || !strings.Contains(err.Error(), "this host's clock says it is "+now.UTC().Format(time.RFC3339)) || !strings.Contains(err.Error(), "check NTP") {
		t.Fatalf("a CA not yet valid: %v; want the error to give this host's clock and say to check NTP", err)
	}
}

// A short-lived certificate (a minute, as tests and renewal drills ask) passes: its
// chain is judged at now, not later.
func TestIssueCheckShortValidity(t *testing.T) {
	ca := newCA(t, "group CA")
	key := newKey(t)
	act := SignCSR{Unit: "db/1", CSRPEM: csrFor(t, key, "db/1", "db-1"), Profile: "peer", Validity: time.Minute, CA: ca.PEM}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(78), Subject: pkix.Name{CommonName: "db/1"}, DNSNames: []string{"db-1"},
		NotBefore: now.Add(-certutil.Backdate), NotAfter: now.Add(time.Minute), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	chain := string(certutil.CertPEM(der))
	var check IssueCheck
	if _, err := check.Check(act, chain, now); err != nil {
		t.Fatalf("a certificate of a minute, asked for a minute: %v", err)
	}
}

// A CRL the signer returns is the signing CA's (or ErrOtherCA), lists exactly the
// serials revoked, carries the number asked for and is current for its lifetime.
func TestIssueCheckCRL(t *testing.T) {
	ca, other := newCA(t, "group CA"), newCA(t, "other CA")
	act := SignCRL{Number: big.NewInt(7), Now: now, CA: ca.PEM,
		Revoked: []Revocation{{Unit: "db/1", Serial: "1f"}, {Unit: "db/2", Serial: "a0", Retired: true}}}
	asked := sdk.CRLRequest{ThisUpdate: now.Add(-certutil.Backdate), NextUpdate: now.Add(CRLLifetime), Number: big.NewInt(7),
		Revoked: []sdk.RevokedCertificate{{Serial: big.NewInt(0x1f), RevokedAt: now}, {Serial: big.NewInt(0xa0), RevokedAt: now}}}
	for _, tt := range []struct {
		name    string
		signer  testCA
		spoil   func(*sdk.CRLRequest)
		wantErr error  // errors.Is
		want    string // substring of the error; "" for none
	}{
		{name: "what was asked", signer: ca},
		{name: "in another order", signer: ca, spoil: func(r *sdk.CRLRequest) { slices.Reverse(r.Revoked) }},
		{name: "another CA's", signer: other, wantErr: ErrOtherCA, want: "not by"},
		{name: "a revoked serial left out", signer: ca, spoil: func(r *sdk.CRLRequest) { r.Revoked = r.Revoked[:1] },
			want: "leaves out 1 revoked serial(s) (a0)"},
		{name: "none listed", signer: ca, spoil: func(r *sdk.CRLRequest) { r.Revoked = nil },
			want: "leaves out 2 revoked serial(s) (1f, a0)"},
		{name: "a serial nothing revoked", signer: ca,
			spoil: func(r *sdk.CRLRequest) {
				r.Revoked = append(r.Revoked, sdk.RevokedCertificate{Serial: big.NewInt(0xbad), RevokedAt: now})
			},
			want: "lists 1 serial(s) nothing revoked (bad)"},
		{name: "another number", signer: ca, spoil: func(r *sdk.CRLRequest) { r.Number = big.NewInt(6) }, want: "its number is 6, not 7"},
		{name: "due again at once", signer: ca, spoil: func(r *sdk.CRLRequest) { r.NextUpdate = now.Add(time.Hour) }, want: "(this host's clock)"},
		{name: "current only from tomorrow", signer: ca, spoil: func(r *sdk.CRLRequest) {
			r.ThisUpdate, r.NextUpdate = now.Add(day), now.Add(2*day)
		}, want: "is current from"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := asked
			req.Revoked = slices.Clone(asked.Revoked)
			if tt.spoil != nil {
				tt.spoil(&req)
			}
			crl, err := certutil.NewCRL(tt.signer.Cert, tt.signer.Key, req)
			if err != nil {
				t.Fatal(err)
			}
			var check IssueCheck
			err = check.CheckCRL(act, string(crl))
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) || (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckCRL = %v, want an error containing %q (%v)", err, tt.want, tt.wantErr)
			}
		})
	}
}

// Every SignCSR and SignCRL carries the bundle the decision publishes (or, when it
// publishes none, the group's): what the leader checks the signer's answers against.
func TestSigningCarriesTheBundle(t *testing.T) {
	old, next := newCA(t, "old CA"), newCA(t, "new CA")
	key := newKey(t)
	ending := Rotation{Phase: PhaseTrust, From: caseal.Fingerprint(old.Cert.Raw), To: caseal.Fingerprint(next.Cert.Raw), Reason: "requested", Since: now}
	for _, tt := range []struct {
		name       string
		signer     testCA
		leaderData map[string]string
		want       string
	}{
		{"a leader of a group with its CA", old, map[string]string{KeyCA: old.PEM, KeyCASigner: "cfssl"}, old.PEM},
		{"a trust phase ending: the new CA leads the bundle published", next,
			map[string]string{KeyCA: old.PEM + next.PEM, KeyCASigner: "cfssl", KeyCARotation: ending.Encode()}, next.PEM + old.PEM},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(View{Unit: "db/0", Leader: true, Now: now, LeaderData: tt.leaderData, CA: CATerms{Signer: "cfssl"},
				Memory: LeaderMemory{SignerCA: tt.signer.PEM, Signer: exportable, SignsCRL: true},
				Units:  map[string]map[string]string{"db/0": {KeyCSR: csrFor(t, key, "db/0", "db-0"), KeyProfile: "peer"}},
				Want:   Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", Validity: day}})
			var signs int
			for _, a := range d.Actions {
				switch a := a.(type) {
				case SignCSR:
					signs++
					if a.CA != tt.want {
						t.Errorf("SignCSR carries %.60q, want the bundle this decision publishes", a.CA)
					}
				case SignCRL:
					signs++
					if a.CA != tt.want {
						t.Errorf("SignCRL carries %.60q, want the bundle this decision publishes", a.CA)
					}
				}
			}
			if signs != 2 {
				t.Fatalf("actions %#v, want a SignCSR and a SignCRL", d.Actions)
			}
		})
	}
}
