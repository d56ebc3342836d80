package protocol

import (
	"crypto"
	"crypto/x509"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

func TestUnitSide(t *testing.T) {
	ca := newCA(t, "group CA")
	otherCA := newCA(t, "stranger CA")
	key, oldKey := newKey(t), newKey(t)
	csr := csrFor(t, key, "db/1", "db-1")
	leaf := certOpts{cn: "db/1", dns: []string{"db-1"}}
	cert, certPEM := ca.sign(t, key.Public(), leaf)
	_, oldCertPEM := ca.sign(t, oldKey.Public(), leaf)
	_, strangerPEM := otherCA.sign(t, key.Public(), leaf)
	oldCSRDigest := Digest(csrFor(t, oldKey, "db/1", "db-1"))
	dueCert, _ := ca.sign(t, key.Public(), certOpts{cn: "db/1", dns: []string{"db-1"},
		notBefore: now.Add(-20 * 24 * time.Hour), notAfter: now.Add(10 * 24 * time.Hour)})
	strangerCert, _ := otherCA.sign(t, key.Public(), leaf)
	pending := &Pending{CSRPEM: csr, PublicKey: key.Public()}
	published := map[string]map[string]string{"db/1": {KeyCSR: csr, KeyProfile: "peer"}}
	settled := map[string]map[string]string{"db/1": {KeyProfile: "peer"}} // the answered CSR withdrawn
	want := Want{CommonName: "db/1", SANs: []string{"db-1"}, Profile: "peer", RenewAt: 0.66}

	tests := []struct {
		name       string
		units      map[string]map[string]string
		leaderData map[string]string
		local      Local
		wantState  State
		wantDetail string
		wantAction Action
		want       *Want // instead of want
		wantWake   time.Time
	}{
		{name: "a new unit makes a CSR",
			wantState: StateCreateCSR, wantAction: CreateCSR{Reason: "no certificate yet"}},
		{name: "a pending CSR missing from the bag is published",
			local:     Local{Pending: pending},
			wantState: StateAwaitingCertificate, wantAction: PublishCSR{CSRPEM: csr, Profile: "peer"}},
		{name: "a pending CSR with another profile in the bag is re-published",
			units: map[string]map[string]string{"db/1": {KeyCSR: csr, KeyProfile: "server"}},
			local: Local{Pending: pending}, wantState: StateAwaitingCertificate,
			wantAction: PublishCSR{CSRPEM: csr, Profile: "peer"}},
		{name: "a published CSR waits for the leader",
			units: published, leaderData: map[string]string{KeyCA: ca.PEM}, local: Local{Pending: pending},
			wantState: StateAwaitingCertificate},
		{name: "a unit renewing as a CA rotation starts installs the new bundle (the leader waits for it to)",
			units: published, leaderData: map[string]string{KeyCA: ca.PEM + otherCA.PEM},
			local:     Local{Pending: pending, Installed: &Installed{Cert: cert, CAPEM: ca.PEM}},
			wantState: StateAwaitingCertificate, wantAction: InstallCA{CAPEM: ca.PEM + otherCA.PEM}},
		{name: "a matching certificate is installed",
			units: published, local: Local{Pending: pending},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/1"): certPEM},
			wantState:  StateCertificateAvailable, wantAction: InstallCertificate{ChainPEM: certPEM, CAPEM: ca.PEM}},
		{name: "a certificate for another key is never accepted",
			units: published, local: Local{Pending: pending},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/1"): oldCertPEM},
			wantState:  StateAwaitingCertificate},
		{name: "a certificate that does not chain to the group CA is never accepted",
			units: published, local: Local{Pending: pending},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/1"): strangerPEM},
			wantState:  StateAwaitingCertificate},
		{name: "a certificate is not installed before the CA is published",
			units: published, local: Local{Pending: pending},
			leaderData: map[string]string{SignedCertificateKey("db/1"): certPEM},
			wantState:  StateAwaitingCertificate},
		{name: "a rejection of this CSR is reported with the leader's reason",
			units: published, local: Local{Pending: pending},
			leaderData: map[string]string{KeyCA: ca.PEM,
				RejectionKey("db/1"): Rejection{CSRDigest: Digest(csr), Reason: "bad name"}.Encode()},
			wantState: StateRejected, wantDetail: "bad name"},
		{name: "a rejection waits RejectionRetry, then a new CSR is tried",
			units: published, local: Local{Pending: pending},
			leaderData: map[string]string{KeyCA: ca.PEM,
				RejectionKey("db/1"): Rejection{CSRDigest: Digest(csr), Reason: "held", Profile: "peer", At: now.Add(-RejectionRetry + time.Second)}.Encode()},
			wantState: StateRejected, wantDetail: "held", wantWake: now.Add(time.Second)},
		{name: "a rejection RejectionRetry old gives a new CSR",
			units: published, local: Local{Pending: pending},
			leaderData: map[string]string{KeyCA: ca.PEM,
				RejectionKey("db/1"): Rejection{CSRDigest: Digest(csr), Reason: "held", Profile: "peer", At: now.Add(-RejectionRetry)}.Encode()},
			wantState: StateCreateCSR, wantAction: CreateCSR{}},
		{name: "a CSR refused for another profile than the config's gives a new CSR at once",
			units: published, local: Local{Pending: pending},
			leaderData: map[string]string{KeyCA: ca.PEM,
				RejectionKey("db/1"): Rejection{CSRDigest: Digest(csr), Reason: "profile", Profile: "admin", At: now}.Encode()},
			wantState: StateCreateCSR, wantDetail: "the CSR was refused for profile admin; the config asks for peer", wantAction: CreateCSR{}},
		{name: "a pending CSR for SANs the config no longer asks for gives a new CSR, rejected or not",
			units: published, local: Local{Pending: &Pending{CSRPEM: csrFor(t, key, "db/1", "db-1", "bad.example"), PublicKey: key.Public()}},
			leaderData: map[string]string{KeyCA: ca.PEM,
				RejectionKey("db/1"): Rejection{CSRDigest: Digest(csrFor(t, key, "db/1", "db-1", "bad.example")), Reason: "not allowed", At: now}.Encode()},
			wantState: StateCreateCSR, wantAction: CreateCSR{}},
		{name: "a pending CSR for another common name gives a new CSR",
			units: published, local: Local{Pending: &Pending{CSRPEM: csrFor(t, key, "db-one", "db-1"), PublicKey: key.Public()}},
			leaderData: map[string]string{KeyCA: ca.PEM},
			wantState:  StateCreateCSR, wantDetail: `the pending CSR no longer matches the config: common name "db-one", not "db/1"`, wantAction: CreateCSR{}},
		{name: "a pending CSR for another kind of key gives a new CSR",
			units: published, local: Local{Pending: pending}, leaderData: map[string]string{KeyCA: ca.PEM},
			want:      &Want{CommonName: "db/1", SANs: []string{"db-1"}, Profile: "peer", RenewAt: 0.66, KeyAlgorithm: "rsa", KeySize: 2048},
			wantState: StateCreateCSR, wantDetail: "the pending CSR no longer matches the config: key ecdsa 256, not rsa 2048", wantAction: CreateCSR{}},
		{name: "a rejection of an earlier CSR does not stick to a new one",
			units: published, local: Local{Pending: pending},
			leaderData: map[string]string{KeyCA: ca.PEM,
				RejectionKey("db/1"): Rejection{CSRDigest: oldCSRDigest, Reason: "old"}.Encode()},
			wantState: StateAwaitingCertificate},
		{name: "a lost certificate gives a new CSR, not the old certificate",
			units:      map[string]map[string]string{"db/1": {KeyCSR: csrFor(t, oldKey, "db/1", "db-1"), KeyProfile: "peer"}},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/1"): oldCertPEM},
			wantState:  StateCreateCSR, wantAction: CreateCSR{Reason: "no certificate yet"}},
		{name: "an installed certificate is kept",
			units: settled, leaderData: map[string]string{KeyCA: ca.PEM},
			local:     Local{Installed: &Installed{Cert: cert, CAPEM: ca.PEM}},
			wantState: StateCertificateAvailable},
		{name: "the answered CSR is withdrawn once the certificate is installed",
			units: published, leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/1"): certPEM},
			local:     Local{Installed: &Installed{Cert: cert, CAPEM: ca.PEM}},
			wantState: StateCertificateAvailable, wantAction: WithdrawCSR{}},
		{name: "a changed CA bundle is written",
			units: settled, leaderData: map[string]string{KeyCA: ca.PEM + otherCA.PEM},
			local:     Local{Installed: &Installed{Cert: cert, CAPEM: ca.PEM}},
			wantState: StateCertificateAvailable, wantAction: InstallCA{CAPEM: ca.PEM + otherCA.PEM}},
		{name: "renewal is due past the configured fraction of the lifetime",
			units: published, leaderData: map[string]string{KeyCA: ca.PEM},
			local:     Local{Installed: &Installed{Cert: dueCert, CAPEM: ca.PEM}},
			wantState: StateRenewalDue, wantAction: CreateCSR{}},
		{name: "changed SANs give a new CSR",
			units: published, leaderData: map[string]string{KeyCA: ca.PEM},
			local:     Local{Installed: &Installed{Cert: strangerCertWithSANs(t, ca, key, "db-1", "db1.example"), CAPEM: ca.PEM}},
			wantState: StateCreateCSR, wantAction: CreateCSR{}},
		{name: "a certificate from a CA the group no longer trusts gives a new CSR",
			units: published, leaderData: map[string]string{KeyCA: ca.PEM},
			local:     Local{Installed: &Installed{Cert: strangerCert, CAPEM: otherCA.PEM}},
			wantState: StateCreateCSR, wantAction: CreateCSR{}},
		{name: "a changed key algorithm gives a new CSR",
			units: published, leaderData: map[string]string{KeyCA: ca.PEM},
			local: Local{Installed: &Installed{Cert: cert, CAPEM: ca.PEM}}, want: &Want{CommonName: "db/1", SANs: []string{"db-1"},
				Profile: "peer", RenewAt: 0.66, KeyAlgorithm: "rsa", KeySize: 3072, ReuseKey: true},
			wantState: StateCreateCSR, wantDetail: "key changed to rsa 3072", wantAction: CreateCSR{}},
		{name: "a changed profile gives a new CSR",
			units: map[string]map[string]string{"db/1": {KeyCSR: csr, KeyProfile: "server"}}, leaderData: map[string]string{KeyCA: ca.PEM},
			local:     Local{Installed: &Installed{Cert: cert, CAPEM: ca.PEM}},
			wantState: StateCreateCSR, wantDetail: "profile changed from server to peer", wantAction: CreateCSR{}},
		{name: "a CA rotation: a certificate not from the bundle's first CA is renewed",
			units: published, leaderData: map[string]string{KeyCA: otherCA.PEM + ca.PEM},
			local:     Local{Installed: &Installed{Cert: cert, CAPEM: ca.PEM + otherCA.PEM}},
			wantState: StateRenewalDue, wantAction: CreateCSR{}},
		{name: "key_rotation never: a renewal keeps the key",
			units: published, leaderData: map[string]string{KeyCA: ca.PEM},
			local: Local{Installed: &Installed{Cert: dueCert, CAPEM: ca.PEM}}, want: &Want{CommonName: "db/1", SANs: []string{"db-1"},
				Profile: "peer", RenewAt: 0.66, KeyAlgorithm: "ecdsa", KeySize: 256, ReuseKey: true},
			wantState: StateRenewalDue, wantAction: CreateCSR{ReuseKey: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := want
			if tt.want != nil {
				w = *tt.want
			}
			d := Decide(View{Unit: "db/1", Units: tt.units, LeaderData: tt.leaderData,
				Local: tt.local, Want: w, Now: now})
			if d.State != tt.wantState {
				t.Fatalf("state = %q (%s), want %q", d.State, d.Detail, tt.wantState)
			}
			if tt.wantDetail != "" && d.Detail != tt.wantDetail {
				t.Errorf("detail = %q, want %q", d.Detail, tt.wantDetail)
			}
			wantAction := tt.wantAction
			if c, ok := wantAction.(CreateCSR); ok {
				// Every CSR asks for what the unit wants, whatever the reason.
				c.Request = sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: w.KeyAlgorithm, Size: w.KeySize}, CommonName: w.CommonName, SANs: w.SANs}
				c.Profile = w.Profile
				wantAction = c
			}
			assertActions(t, d.Actions, wantAction)
			if !tt.wantWake.IsZero() && !d.WakeAt.Equal(tt.wantWake) {
				t.Errorf("wake at %s, want %s", d.WakeAt, tt.wantWake)
			}
		})
	}
}

// strangerCertWithSANs is a valid certificate from the group CA whose SANs differ from
// what the unit wants.
func strangerCertWithSANs(t *testing.T, ca testCA, key interface{ Public() crypto.PublicKey }, dns ...string) *x509.Certificate {
	cert, _ := ca.sign(t, key.Public(), certOpts{cn: "db/1", dns: dns})
	return cert
}

// assertActions checks for exactly one action of the wanted value, or none. Actions
// whose kind is wanted but whose detail varies (reasons with times) match on type.
func assertActions(t *testing.T, got []Action, want Action) {
	t.Helper()
	if want == nil {
		if len(got) != 0 {
			t.Fatalf("actions = %#v, want none", got)
		}
		return
	}
	if _, renew := want.(CreateCSR); renew && len(got) == 2 {
		if _, ok := got[0].(InstallCA); ok {
			got = got[1:] // a renewal installs a changed bundle at once
		}
	}
	if len(got) != 1 {
		t.Fatalf("actions = %#v, want exactly %#v", got, want)
	}
	if reflect.TypeOf(got[0]) != reflect.TypeOf(want) {
		t.Fatalf("action = %T, want %T", got[0], want)
	}
	if c, ok := want.(CreateCSR); ok && c.Reason == "" {
		g := got[0].(CreateCSR)
		if g.ReuseKey != c.ReuseKey || g.Profile != c.Profile || !reflect.DeepEqual(g.Request, c.Request) {
			t.Fatalf("action = %#v, want ReuseKey %v, profile %q and request %#v", got[0], c.ReuseKey, c.Profile, c.Request)
		}
		return
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Fatalf("action = %#v, want %#v", got[0], want)
	}
}

func TestLeaderSide(t *testing.T) {
	ca := newCA(t, "group CA")
	newSignerCA := newCA(t, "new leader's CA")
	key0, key1, lostKey1 := newKey(t), newKey(t), newKey(t)
	csr0 := csrFor(t, key0, "db/0", "db-0")
	csr1 := csrFor(t, key1, "db/1", "db-1")
	_, cert0 := ca.sign(t, key0.Public(), certOpts{cn: "db/0", dns: []string{"db-0"}})
	_, cert1 := ca.sign(t, key1.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	_, lostCert1 := ca.sign(t, lostKey1.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	_, cert1OldCA := newCA(t, "retired CA").sign(t, key1.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	// The leader db/0 is itself a unit with an installed certificate.
	self := Local{Installed: &Installed{Cert: mustLeaf(t, cert0), CAPEM: ca.PEM}}
	sealKey := make([]byte, caseal.KeySize)
	sealed, err := caseal.Seal(sealKey, "rel", ca.Cert.Raw, []byte("ca key"))
	if err != nil {
		t.Fatal(err)
	}
	sealedCA := sealed.Encode()
	sealed, _ = caseal.Seal(sealKey, "rel", newCA(t, "third CA").Cert.Raw, []byte("other key"))
	sealedOther := sealed.Encode()
	bag := func(csr string) map[string]string { return map[string]string{KeyCSR: csr, KeyProfile: "peer"} }
	both := map[string]map[string]string{"db/0": bag(csr0), "db/1": bag(csr1)}
	signed := map[string]string{KeyCA: ca.PEM, KeyCASigner: "cfssl", SignedCertificateKey("db/0"): cert0, SignedCertificateKey("db/1"): cert1}
	record := SetLeaderData{KV: map[string]string{KeyCASigner: "cfssl", KeyCARotation: ""}}
	with := merged

	tests := []struct {
		name        string
		signerCA    string
		units       map[string]map[string]string
		leaderData  map[string]string
		local       Local
		want        []Action
		wantReason  string // substring of a RejectCSR reason
		wantRule    policy.Rule
		wantProblem string // substring of the leader problem
		caSeal      bool
		terms       *SignerTerms // the signer's claims, exportable when nil
	}{
		{name: "a new leader first asks its signer for the CA",
			units: both, local: self, want: []Action{LoadSignerCA{}}},
		{name: "the first leader publishes its signer's CA",
			signerCA: ca.PEM, units: both, local: self,
			want: []Action{PublishCA{BundlePEM: ca.PEM}, record}},
		{name: "a leader that is itself a unit signs its own CSR too",
			signerCA: ca.PEM, units: both, leaderData: map[string]string{KeyCA: ca.PEM},
			local: Local{Pending: &Pending{CSRPEM: csr0, PublicKey: key0.Public()}},
			want:  []Action{SignCSR{Unit: "db/0", CSRPEM: csr0, Profile: "peer", Validity: day}, SignCSR{Unit: "db/1", CSRPEM: csr1, Profile: "peer", Validity: day}}},
		{name: "every CSR with a matching certificate: nothing to do",
			signerCA: ca.PEM, units: both, leaderData: signed, local: self},
		{name: "a CSR re-sent after a lost certificate is signed again",
			signerCA: ca.PEM, units: both, local: self,
			leaderData: with(signed, SignedCertificateKey("db/1"), lostCert1),
			want:       []Action{SignCSR{Unit: "db/1", CSRPEM: csr1, Profile: "peer", Validity: day, Earlier: issuedRecord(t, lostCert1)}}},
		{name: "a certificate from a CA no longer trusted is signed again",
			signerCA: ca.PEM, units: both, local: self,
			leaderData: with(signed, SignedCertificateKey("db/1"), cert1OldCA),
			want:       []Action{SignCSR{Unit: "db/1", CSRPEM: csr1, Profile: "peer", Validity: day, Earlier: issuedRecord(t, cert1OldCA)}}},
		{name: "a unit that departs before signing is not signed",
			signerCA: ca.PEM, units: map[string]map[string]string{"db/0": bag(csr0)},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/0"): cert0}, local: self},
		{name: "a departed unit's certificate is recorded for revocation, and kept (its names held) until a CRL lists it",
			signerCA: ca.PEM, units: map[string]map[string]string{"db/0": bag(csr0)}, leaderData: signed, local: self,
			want: []Action{SetLeaderData{KV: map[string]string{RevocationKey("db/1"): encodeRevocations(
				[]Revocation{{Unit: "db/1", Serial: mustLeaf(t, cert1).SerialNumber.Text(16), NotAfter: mustLeaf(t, cert1).NotAfter, Departed: now}})}}}},
		{name: "a garbage CSR is rejected",
			signerCA: ca.PEM, units: map[string]map[string]string{"db/0": bag(csr0), "db/1": bag("not a csr")},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/0"): cert0}, local: self,
			wantReason: "csr of db/1: CSR is not PEM", wantRule: policy.RuleMalformed},
		{name: "a CSR that asks for another unit's name is rejected",
			signerCA: ca.PEM, units: map[string]map[string]string{"db/0": bag(csr0), "db/1": bag(csrFor(t, key1, "db/1", "db-1", "db-0"))},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/0"): cert0}, local: self,
			wantReason: `asks for "db-0", the name of unit db/0`, wantRule: policy.RuleReserved},
		{name: "a CSR with another unit's common name is rejected",
			signerCA: ca.PEM, units: map[string]map[string]string{"db/0": bag(csr0), "db/1": bag(csrFor(t, key1, "db/0"))},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/0"): cert0}, local: self,
			wantReason: `asks for common name "db/0"; it may ask only for "db/1"`, wantRule: policy.RuleSubject},
		{name: "a CSR with an unknown profile is rejected",
			signerCA: ca.PEM, units: map[string]map[string]string{"db/0": bag(csr0), "db/1": {KeyCSR: csr1, KeyProfile: "admin"}},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/0"): cert0}, local: self,
			wantReason: `CSR of db/1 refused: profile "admin" is not one of`, wantRule: policy.RuleProfile},
		{name: "a CSR rejected once is not rejected again",
			signerCA: ca.PEM, units: map[string]map[string]string{"db/0": bag(csr0), "db/1": bag("not a csr")},
			leaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/0"): cert0,
				RejectionKey("db/1"): Rejection{CSRDigest: Digest("not a csr"), Reason: "x"}.Encode()}, local: self},
		{name: "a new leader whose signer holds another CA, without a sealed CA, signs nothing and says why",
			signerCA: newSignerCA.PEM, units: both, leaderData: with(signed, SignedCertificateKey("db/1"), ""), local: self,
			wantProblem: "leader data holds no sealed CA key"},
		{name: "a new leader without the seal key does not open the sealed CA",
			signerCA: newSignerCA.PEM, units: both, leaderData: with(signed, KeyCASealed, sealedCA), local: self,
			wantProblem: "no ca_seal key"},
		{name: "a sealed key of another CA is not imported",
			signerCA: newSignerCA.PEM, units: both, leaderData: with(signed, KeyCASealed, sealedOther), local: self, caSeal: true,
			wantProblem: "is not the group CA's"},
		{name: "a new leader with the seal key imports the group's sealed CA",
			signerCA: newSignerCA.PEM, units: both, leaderData: with(signed, KeyCASealed, sealedCA), local: self, caSeal: true,
			want: []Action{ImportSealedCA{CACertPEM: ca.PEM, Sealed: sealedCA}}},
		{name: "a new leader whose signer cannot import leaves the sealed CA alone and says why",
			signerCA: newSignerCA.PEM, units: both, leaderData: with(signed, KeyCASealed, sealedCA), local: self, caSeal: true,
			terms:       &SignerTerms{Custody: sdk.CustodyExportable, Exports: true},
			wantProblem: "does not claim ca_import"},
		{name: "a leader with the seal key seals the CA when leader data lacks it",
			signerCA: ca.PEM, units: both, leaderData: signed, local: self, caSeal: true,
			want: []Action{SealCA{}}},
		{name: "a CA sealed already is not sealed again",
			signerCA: ca.PEM, units: both, leaderData: with(signed, KeyCASealed, sealedCA), local: self, caSeal: true},
		{name: "the first leader publishes and seals the CA before it signs",
			signerCA: ca.PEM, units: both, leaderData: map[string]string{}, local: self, caSeal: true,
			want: []Action{PublishCA{BundlePEM: ca.PEM}, record, SealCA{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ld := tt.leaderData
			if ld[KeyCA] != "" && ld[KeyCASigner] == "" { // a group the signer "cfssl" leads
				ld = with(ld, KeyCASigner, "cfssl")
			}
			terms := exportable
			if tt.terms != nil {
				terms = *tt.terms
			}
			d := Decide(View{Unit: "db/0", Leader: true, Units: tt.units, LeaderData: ld,
				Local: tt.local, Memory: LeaderMemory{SignerCA: tt.signerCA, Signer: terms}, Now: now, CASeal: tt.caSeal, CA: CATerms{Signer: "cfssl"},
				Want: Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", RenewAt: 0.66, Validity: day}})
			got := d.Actions
			if !strings.Contains(d.LeaderProblem, tt.wantProblem) || (tt.wantProblem == "") != (d.LeaderProblem == "") {
				t.Fatalf("leader problem = %q, want one containing %q", d.LeaderProblem, tt.wantProblem)
			}
			if tt.wantReason != "" {
				got = leaderOnly(got)
				if len(got) != 1 {
					t.Fatalf("actions = %#v, want one RejectCSR", got)
				}
				r, ok := got[0].(RejectCSR)
				if !ok || !strings.Contains(r.Rejection.Reason, tt.wantReason) || r.Unit != "db/1" || r.Rejection.Rule != string(tt.wantRule) ||
					r.CSRPEM != tt.units["db/1"][KeyCSR] || r.Rejection.CSRDigest != Digest(r.CSRPEM) {
					t.Fatalf("action = %#v, want a rejection of db/1 by rule %q containing %q", got[0], tt.wantRule, tt.wantReason)
				}
				return
			}
			// The leader's own unit side may add InstallCertificate etc.; compare only
			// the leader's actions.
			if !reflect.DeepEqual(leaderOnly(got), tt.want) {
				t.Fatalf("leader actions = %#v\nwant %#v", leaderOnly(got), tt.want)
			}
		})
	}
}

func leaderOnly(actions []Action) []Action {
	var out []Action
	for _, a := range actions {
		switch a := a.(type) {
		case SignCSR: // the bundle each carries is TestSigningCarriesTheBundle's
			a.CA = ""
			out = append(out, a)
		case SignCRL:
			a.CA = ""
			out = append(out, a)
		case LoadSignerCA, LoadReferencedCA, ImportReferencedCA, PublishCA, SealCA, ImportSealedCA, RejectCSR, ForgetUnit, NewSignerCA, SetLeaderData:
			out = append(out, a)
		}
	}
	return out
}

// issuedRecord is the IssuedKey value that records the chains' leaves.
func issuedRecord(t testing.TB, chains ...string) string {
	var list []Issued
	for _, c := range chains {
		leaf := mustLeaf(t, c)
		list = append(list, Issued{Serial: leaf.SerialNumber.Text(16), NotAfter: leaf.NotAfter, Names: namesOf(leaf.DNSNames, leaf.IPAddresses)})
	}
	return encodeIssued(list)
}

func mustLeaf(t testing.TB, chain string) *x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertificates([]byte(chain))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// Decide is pure: the same view gives the same decision with nothing parsed kept, a cold
// Parsed and a warm one (it remembers, it does not decide), and the view it is given is
// left as it was (its maps and the leader's memory included).
func TestDecideIsPure(t *testing.T) {
	ca := newCA(t, "group CA")
	key, key1 := newKey(t), newKey(t)
	csr, csr1 := csrFor(t, key, "db/0", "db-0"), csrFor(t, key1, "db/1", "db-1")
	_, cert1 := ca.sign(t, key1.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	v := View{Unit: "db/0", Leader: true, Now: now,
		Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable, SignsCRL: true, SignFailures: map[string]SignFailure{"x": {Internal: 1}}},
		Units: map[string]map[string]string{"db/0": {KeyCSR: csr, KeyProfile: "peer"},
			"db/1": {KeyCSR: csr1, KeyProfile: "peer", KeySerial: mustLeaf(t, cert1).SerialNumber.Text(16)}},
		LeaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/1"): cert1, SignedCertificateKey("db/9"): cert1},
		Local:      Local{Pending: &Pending{CSRPEM: csr, PublicKey: key.Public()}},
		Want:       Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", Validity: day}}
	before := deepCopyView(v)
	first := Decide(v) // no cache
	warm := v
	warm.Parsed = NewParsed()
	for i := 0; i < 3; i++ { // cold, then warm
		if again := Decide(warm); !reflect.DeepEqual(first, again) {
			t.Fatalf("decision %d with a cache differs: %#v vs %#v", i, again, first)
		}
	}
	if !reflect.DeepEqual(v, before) {
		t.Fatalf("Decide changed its view:\n%#v\nwas\n%#v", v, before)
	}
	if len(first.Signing) != 1 || first.Signing[0] != "db/0" {
		t.Fatalf("Signing = %v, want [db/0]", first.Signing)
	}
}

func deepCopyView(v View) View {
	out := v
	out.Units = map[string]map[string]string{}
	for u, bag := range v.Units {
		out.Units[u] = maps.Clone(bag)
	}
	out.LeaderData = maps.Clone(v.LeaderData)
	out.Memory.SignFailures = maps.Clone(v.Memory.SignFailures)
	if v.Local.Pending != nil {
		p := *v.Local.Pending
		out.Local.Pending = &p
	}
	return out
}

func TestRenewalTime(t *testing.T) {
	ca := newCA(t, "ca")
	cert, _ := ca.sign(t, newKey(t).Public(), certOpts{cn: "x", notBefore: now, notAfter: now.Add(100 * time.Hour)})
	// A signer that backdates by 5 minutes: a 10-minute certificate lives 15.
	short, _ := ca.sign(t, newKey(t).Public(), certOpts{cn: "x", notBefore: now.Add(-5 * time.Minute), notAfter: now.Add(10 * time.Minute)})
	for _, tt := range []struct {
		name string
		cert *x509.Certificate
		want Want
		at   time.Time
	}{
		{"a fraction of the lifetime", cert, Want{RenewAt: 0.66}, now.Add(66 * time.Hour)},
		{"1 is expiry", cert, Want{RenewAt: 1}, now.Add(100 * time.Hour)},
		{"0 is expiry", cert, Want{RenewAt: 0}, now.Add(100 * time.Hour)},
		{"above 1 is expiry", cert, Want{RenewAt: 1.5}, now.Add(100 * time.Hour)},
		{"backdating is not lifetime", short, Want{RenewAt: 0.5, Validity: 10 * time.Minute}, now.Add(5 * time.Minute)},
		{"without the validity asked for, NotBefore counts", short, Want{RenewAt: 0.5}, now.Add(150 * time.Second)},
	} {
		if got := RenewalTime(tt.cert, tt.want); !got.Equal(tt.at) {
			t.Errorf("%s: RenewalTime = %v, want %v", tt.name, got, tt.at)
		}
	}
}

// Jitter spreads a fleet's renewals over [renew_at - jitter, renew_at] of the lifetime,
// and one certificate always gets the same time.
func TestRenewalJitter(t *testing.T) {
	ca := newCA(t, "ca")
	w := Want{RenewAt: 0.667, RenewJitter: 0.1}
	var earliest, latest time.Time
	for i := 0; i < 200; i++ {
		cert, _ := ca.sign(t, newKey(t).Public(), certOpts{cn: "x", notBefore: now, notAfter: now.Add(1000 * time.Hour)})
		at := RenewalTime(cert, w)
		if !at.Equal(RenewalTime(cert, w)) {
			t.Fatal("the same certificate got two renewal times")
		}
		if at.Before(now.Add(567*time.Hour)) || at.After(now.Add(667*time.Hour)) {
			t.Fatalf("renewal at %v, outside 567h..667h", at.Sub(now))
		}
		if earliest.IsZero() || at.Before(earliest) {
			earliest = at
		}
		if at.After(latest) {
			latest = at
		}
	}
	if spread := latest.Sub(earliest); spread < 80*time.Hour {
		t.Fatalf("200 certificates renew within %v of each other; want them spread over most of 100h", spread)
	}
}

// A certificate signed for the unit's key that starts after the unit's now: the unit
// waits, says how far ahead it starts, and wakes then.
func TestClockSkew(t *testing.T) {
	ca := newCA(t, "group CA")
	key := newKey(t)
	csr := csrFor(t, key, "db/1", "db-1")
	starts := now.Add(10 * time.Minute)
	_, certPEM := ca.sign(t, key.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}, notBefore: starts, notAfter: starts.Add(day)})
	d := Decide(View{Unit: "db/1", Now: now, Units: map[string]map[string]string{"db/1": {KeyCSR: csr, KeyProfile: "peer"}},
		LeaderData: map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/1"): certPEM},
		Local:      Local{Pending: &Pending{CSRPEM: csr, PublicKey: key.Public()}},
		Want:       Want{CommonName: "db/1", SANs: []string{"db-1"}, Profile: "peer", RenewAt: 0.66}})
	if d.State != StateAwaitingCertificate || d.ClockSkew != 10*time.Minute || !d.WakeAt.Equal(starts) || len(d.Actions) != 0 {
		t.Fatalf("decision %+v, want waiting, a skew of 10m and a wake at %s", d, starts)
	}
}
