package protocol

import (
	"crypto/x509"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// The rules at their edges, each case one that a mutation of the rule's comparison
// (found by the mutation check, docs/TESTING.md) would decide the other way.

func TestUnitSideEdges(t *testing.T) {
	ca, other := newCA(t, "group CA"), newCA(t, "next CA")
	key := newKey(t)
	cert, _ := ca.sign(t, key.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	due, _ := ca.sign(t, key.Public(), certOpts{cn: "db/1", dns: []string{"db-1"},
		notBefore: now.Add(-20 * 24 * time.Hour), notAfter: now.Add(10 * 24 * time.Hour)})
	bag := map[string]map[string]string{"db/1": {KeyProfile: "peer"}}
	want := Want{CommonName: "db/1", SANs: []string{"db-1"}, Profile: "peer", RenewAt: 0.66, KeyAlgorithm: "ecdsa", KeySize: 256}
	tests := []struct {
		name    string
		cert    *x509.Certificate
		ca      string // published
		want    Want
		state   State
		actions []string // action types, in order
	}{
		{"a renewal with a changed bundle installs the bundle first", due, ca.PEM + other.PEM, want,
			StateRenewalDue, []string{"InstallCA", "CreateCSR"}},
		{"a renewal with the same bundle only makes a CSR", due, ca.PEM, want,
			StateRenewalDue, []string{"CreateCSR"}},
		{"no common name asked for: the certificate's is kept", cert, ca.PEM, edited(want, func(w *Want) { w.CommonName = "" }),
			StateCertificateAvailable, nil},
		{"another ecdsa size is a new key", cert, ca.PEM, edited(want, func(w *Want) { w.KeySize = 384 }),
			StateCreateCSR, []string{"CreateCSR"}},
		{"the same ecdsa size is kept", cert, ca.PEM, want,
			StateCertificateAvailable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(View{Unit: "db/1", Units: bag, LeaderData: map[string]string{KeyCA: tt.ca}, Now: now, Want: tt.want,
				Local: Local{Installed: &Installed{Cert: tt.cert, CAPEM: ca.PEM}}})
			var got []string
			for _, a := range d.Actions {
				got = append(got, strings.TrimPrefix(reflect.TypeOf(a).String(), "protocol."))
			}
			if d.State != tt.state || !reflect.DeepEqual(got, tt.actions) {
				t.Fatalf("state %q (%s), actions %v; want %q, %v", d.State, d.Detail, got, tt.state, tt.actions)
			}
		})
	}
	if at := RenewalTime(cert, Want{RenewAt: 0}); !at.Equal(cert.NotAfter) {
		t.Errorf("RenewalTime with renew_at 0 = %s, want the expiry %s", at, cert.NotAfter)
	}
}

func edited(w Want, edit func(*Want)) Want {
	edit(&w)
	return w
}

func TestSigningValidityEdges(t *testing.T) {
	pol := defaultPolicy
	tests := []struct {
		name    string
		caLeft  time.Duration
		asked   time.Duration
		want    time.Duration
		wantErr string
	}{
		{"a CA with exactly the backdate left signs nothing", certutil.Backdate, time.Hour, 0, "nothing can be signed"},
		{"a CA with a second more signs for that second and the backdate", certutil.Backdate + time.Second, time.Hour, certutil.Backdate + time.Second, ""},
		{"a validity of zero signs nothing", 48 * time.Hour, 0, 0, "signs nothing"},
		{"the shortest validity is signed", 48 * time.Hour, time.Second, time.Second, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := caEnding(t, "CA", now.Add(tt.caLeft))
			got, err := SigningValidity(pol, tt.asked, ca.Cert, now)
			if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SigningValidity = %s, %v; want %s, %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// The CRL is signed again once less than half of its life is left, not at half.
func TestCRLRefreshedPastHalfItsLife(t *testing.T) {
	ca := newCA(t, "group CA")
	signed := func(nextUpdate time.Time) string {
		pem, err := certutil.NewCRL(ca.Cert, ca.Key, sdk.CRLRequest{ThisUpdate: nextUpdate.Add(-CRLLifetime), NextUpdate: nextUpdate, Number: big.NewInt(4)})
		if err != nil {
			t.Fatal(err)
		}
		return string(pem)
	}
	for _, tt := range []struct {
		left time.Duration
		due  bool
	}{{CRLLifetime / 2, false}, {CRLLifetime/2 - time.Second, true}} {
		v := View{LeaderData: map[string]string{KeyCRL: signed(now.Add(tt.left))}, Now: now, Parsed: NewParsed()}
		number, due := v.crlDue(ca.PEM, nil)
		if due != tt.due || number.Int64() != 5 {
			t.Errorf("a CRL with %s left: due %v, next number %s; want %v, 5", tt.left, due, number, tt.due)
		}
	}
}

// A leader that may not sign names the signer's CA and the group's by fingerprint.
func TestContinuityProblemNamesBothCAs(t *testing.T) {
	group, mine := newCA(t, "group CA"), newCA(t, "new leader's CA")
	d := Decide(View{Unit: "db/0", Leader: true, Now: now, Memory: LeaderMemory{SignerCA: mine.PEM, Signer: exportable},
		Units: map[string]map[string]string{"db/0": {}}, LeaderData: map[string]string{KeyCA: group.PEM, KeyCASigner: "cfssl"},
		CA: CATerms{Signer: "cfssl"}, Want: Want{CommonName: "db/0", Validity: day}})
	for _, fp := range []string{caseal.Fingerprint(mine.Cert.Raw)[:16], caseal.Fingerprint(group.Cert.Raw)[:16]} {
		if !strings.Contains(d.LeaderProblem, fp) {
			t.Errorf("leader problem %q does not name CA %s", d.LeaderProblem, fp)
		}
	}
}

// ca.rotate_before rotates a CA with less than that left and less than a third of its
// life left; 0 never rotates.
func TestExpiringCARotatesAtItsEdges(t *testing.T) {
	const life = 365*24*time.Hour + time.Hour // pkitest's CAs
	tests := []struct {
		name         string
		left         time.Duration
		rotateBefore time.Duration
		rotates      bool
	}{
		{"less than rotate_before and a third of its life", 100 * 24 * time.Hour, 100*24*time.Hour + time.Second, true},
		{"exactly rotate_before left", 100 * 24 * time.Hour, 100 * 24 * time.Hour, false},
		{"more than a third of its life left", 130 * 24 * time.Hour, 200 * 24 * time.Hour, false},
		{"exactly a third of its life left", life / 3, 200 * 24 * time.Hour, false},
		{"rotate_before 0, even for an expired CA", -time.Hour, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := caEnding(t, "group CA", now.Add(tt.left))
			d := Decide(View{Unit: "db/0", Leader: true, Now: now, Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable},
				Units: map[string]map[string]string{"db/0": {}}, LeaderData: map[string]string{KeyCA: ca.PEM, KeyCASigner: "cfssl"},
				CA: CATerms{Signer: "cfssl", RotateBefore: tt.rotateBefore}, Want: Want{CommonName: "db/0", Validity: day}})
			rotates := false
			for _, a := range d.Actions {
				if n, ok := a.(NewSignerCA); ok && strings.Contains(n.Reason, "expires at") {
					rotates = true
					// The new CA is like the one it replaces: its name and its lifetime.
					if n.CommonName != "group CA" || n.Lifetime != ca.Cert.NotAfter.Sub(ca.Cert.NotBefore) {
						t.Errorf("a new CA named %q for %s; want %q for %s", n.CommonName, n.Lifetime, "group CA", ca.Cert.NotAfter.Sub(ca.Cert.NotBefore))
					}
				}
			}
			if rotates != tt.rotates {
				t.Fatalf("%s left, rotate_before %s: rotates %v, want %v (actions %#v)", tt.left, tt.rotateBefore, rotates, tt.rotates, d.Actions)
			}
		})
	}
}

// What the leader says of the CA, and what it records of a rotation's start: steady when
// nothing is to do; a rotation asked for records the request, one for expiry does not.
func TestCAStateAndRotationRecord(t *testing.T) {
	group, next := newCA(t, "group CA"), newCA(t, "next CA")
	expiringGroup := caEnding(t, "group CA", now.Add(10*24*time.Hour))
	steady := View{Unit: "db/0", Leader: true, Now: now, Memory: LeaderMemory{SignerCA: group.PEM, Signer: exportable},
		Units: map[string]map[string]string{"db/0": {}}, LeaderData: map[string]string{KeyCA: group.PEM, KeyCASigner: "cfssl"},
		CA: CATerms{Signer: "cfssl"}, Want: Want{CommonName: "db/0", Validity: day}}
	if d := Decide(steady); d.CAState != CASteady || len(leaderOnly(d.Actions)) != 0 {
		t.Errorf("a steady group: CA state %q, actions %#v; want %q and none", d.CAState, d.Actions, CASteady)
	}
	requested := steady
	requested.Memory = LeaderMemory{SignerCA: next.PEM, Signer: exportable}
	requested.CA.Request = "r1"
	d := Decide(requested)
	record := rotationRecord(t, d)
	if d.CAState != "CA rotation, phase trust (requested (tlsrelay ca rotate))" || record[KeyCARequest] != "r1" {
		t.Errorf("a requested rotation: CA state %q, record %v; want the trust phase and the request recorded", d.CAState, record)
	}
	expiring := steady
	expiring.Memory = LeaderMemory{SignerCA: next.PEM, Signer: exportable}
	expiring.LeaderData = map[string]string{KeyCA: expiringGroup.PEM, KeyCASigner: "cfssl"}
	expiring.CA.RotateBefore = 30 * 24 * time.Hour
	record = rotationRecord(t, Decide(expiring))
	if _, ok := record[KeyCARequest]; ok || record[KeyCARotation] == "" {
		t.Errorf("a rotation for expiry: record %v; want a rotation and no request key", record)
	}
}

func rotationRecord(t *testing.T, d Decision) map[string]string {
	t.Helper()
	for _, a := range d.Actions {
		if s, ok := a.(SetLeaderData); ok {
			if _, ok := s.KV[KeyCARotation]; ok {
				return s.KV
			}
		}
	}
	t.Fatalf("no rotation record in %#v", d.Actions)
	return nil
}

// A steady leader's bundle keeps an older CA while a joined unit's certificate needs it,
// and drops one nobody's certificate needs.
func TestSteadyBundleKeepsOnlyCAsInUse(t *testing.T) {
	signer, old, unused := newCA(t, "group CA"), newCA(t, "old CA"), newCA(t, "unused CA")
	key := newKey(t)
	_, cert1 := old.sign(t, key.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	d := Decide(View{Unit: "db/0", Leader: true, Now: now, Memory: LeaderMemory{SignerCA: signer.PEM, Signer: exportable},
		Units: map[string]map[string]string{"db/0": {}, "db/1": {}},
		LeaderData: map[string]string{KeyCA: signer.PEM + old.PEM + unused.PEM, KeyCASigner: "cfssl",
			SignedCertificateKey("db/1"): cert1},
		CA: CATerms{Signer: "cfssl"}, Want: Want{CommonName: "db/0", Validity: day}})
	var bundle string
	for _, a := range d.Actions {
		if p, ok := a.(PublishCA); ok {
			bundle = p.BundlePEM
		}
	}
	if bundle != signer.PEM+old.PEM {
		t.Fatalf("bundle published: signing CA %v, old CA in use %v, unused CA %v; want the first two only",
			strings.Contains(bundle, signer.PEM), strings.Contains(bundle, old.PEM), strings.Contains(bundle, unused.PEM))
	}
}

// A CA near its expiry rotates once with a sealed key too: the leader rotates to the CA
// it made, and does not import the group's sealed CA back over it (and make another,
// for ever).
func TestExpiringCARotatesOnceWithASealedKey(t *testing.T) {
	g := newGroup(t, 1, testCA{caEnding(t, "group CA", now.Add(10*24*time.Hour))}, "db/0", "db/1", "db/2")
	g.seal = true
	g.settle()
	g.rotateBefore = 30 * 24 * time.Hour
	g.settle()
	g.allFrom(g.signer)
	if g.newCAs != 1 {
		t.Errorf("%d new CAs made, want 1", g.newCAs)
	}
}
