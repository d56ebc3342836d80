package protocol

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk"
)

func TestLeaderMemoryStep(t *testing.T) {
	fail := func(code sdk.Code) Result { return CSRSignFailed{Digest: "d", Code: code, Reason: "the signer choked"} }
	loaded := LeaderMemory{SignerCA: "ca", Signer: exportable, SignsCRL: true, ReferencedCA: "ref"}
	tests := []struct {
		name    string
		from    LeaderMemory
		results []Result
		want    LeaderMemory
	}{
		{"loading the signer's CA remembers it, its CRL capability, its terms and when",
			LeaderMemory{}, []Result{SignerCALoaded{BundlePEM: "ca", SignsCRL: true, Signer: exportable, At: now}},
			LeaderMemory{SignerCA: "ca", Signer: exportable, SignsCRL: true, LoadedAt: now}},
		{"a move of its CA the signer does not make is planned no more",
			loaded, []Result{SignerLacks{Capability: sdk.CapCAExport}, SignerLacks{Capability: sdk.CapCAImport}},
			LeaderMemory{SignerCA: "ca", Signer: SignerTerms{Custody: sdk.CustodyExportable}, SignsCRL: true, ReferencedCA: "ref"}},
		{"nor one it cannot generate",
			LeaderMemory{Signer: SignerTerms{Custody: sdk.CustodyShared, Generate: true}}, []Result{SignerLacks{Capability: sdk.CapCAGenerate}},
			LeaderMemory{Signer: SignerTerms{Custody: sdk.CustodyShared}}},
		{"an invalid CSR is refused at once",
			loaded, []Result{fail(sdk.CodeInvalidArgument)},
			withFailures(loaded, map[string]SignFailure{"d": {Refused: true, Reason: "the signer choked"}})},
		{"Internal twice is not yet a refusal",
			loaded, []Result{fail(sdk.CodeInternal), fail(sdk.CodeInternal)},
			withFailures(loaded, map[string]SignFailure{"d": {Internal: 2, Reason: "the signer choked"}})},
		{"Internal SignAttempts times is a refusal",
			loaded, []Result{fail(sdk.CodeInternal), fail(sdk.CodeInternal), fail(sdk.CodeInternal)},
			withFailures(loaded, map[string]SignFailure{"d": {Internal: 3, Refused: true, Reason: "the signer choked"}})},
		{"an unavailable signer is never held against the CSR",
			loaded, []Result{fail(sdk.CodeUnavailable), fail(sdk.CodePermissionDenied), fail(sdk.CodeUnavailable)},
			loaded},
		{"an answered CSR is forgotten",
			loaded, []Result{fail(sdk.CodeInternal), CSRAnswered{Digest: "d"}},
			withFailures(loaded, map[string]SignFailure{})},
		{"a CRL the signer cannot sign turns CRLs off",
			loaded, []Result{CRLUnsupported{}},
			LeaderMemory{SignerCA: "ca", Signer: exportable, ReferencedCA: "ref"}},
		{"a changed CA is loaded again, with the referenced one",
			loaded, []Result{SignerCAChanged{}},
			LeaderMemory{SignsCRL: true, Signer: exportable}},
		{"an imported ca.ref CA is remembered",
			loaded, []Result{SignerCAChanged{Imported: "fp"}},
			LeaderMemory{SignsCRL: true, Signer: exportable, ReferencedCA: "ref", ImportedRef: "fp"}},
		{"losing the leadership forgets everything",
			withFailures(loaded, map[string]SignFailure{"d": {Internal: 1}}), []Result{LeadershipLost{}},
			LeaderMemory{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.from
			beforeFailures := map[string]SignFailure{}
			for k, v := range before.SignFailures {
				beforeFailures[k] = v
			}
			m := tt.from
			for _, r := range tt.results {
				m = m.Step(r)
			}
			if !reflect.DeepEqual(m, tt.want) {
				t.Fatalf("memory = %#v\nwant %#v", m, tt.want)
			}
			if len(before.SignFailures) != len(beforeFailures) || !reflect.DeepEqual(map[string]SignFailure(before.SignFailures), beforeFailures) && len(beforeFailures) > 0 {
				t.Fatalf("Step changed the memory it was given: %#v", before.SignFailures)
			}
		})
	}
}

func withFailures(m LeaderMemory, failures map[string]SignFailure) LeaderMemory {
	m.SignFailures = failures
	return m
}

// The rules that once lived in the agent: each is a decision of the protocol now.
func TestLeaderRulesFromMemory(t *testing.T) {
	ca := newCA(t, "group CA")
	refCA := newCA(t, "referenced CA")
	key0, key1 := newKey(t), newKey(t)
	csr0, csr1 := csrFor(t, key0, "db/0", "db-0"), csrFor(t, key1, "db/1", "db-1")
	_, cert0 := ca.sign(t, key0.Public(), certOpts{cn: "db/0", dns: []string{"db-0"}})
	self := Local{Installed: &Installed{Cert: mustLeaf(t, cert0), CAPEM: ca.PEM}}
	units := map[string]map[string]string{"db/0": {KeyCSR: csr0, KeyProfile: "peer"}, "db/1": {KeyCSR: csr1, KeyProfile: "peer"}}
	published := map[string]string{KeyCA: ca.PEM, KeyCASigner: "cfssl", SignedCertificateKey("db/0"): cert0}
	refused := LeaderMemory{SignerCA: ca.PEM, Signer: exportable, SignFailures: map[string]SignFailure{Digest(csr1): {Refused: true, Reason: "invalid argument: bad CSR"}}}
	short := policy.Defaults()
	short.MaxValidity = 6 * time.Hour
	shortPolicy := policy.MustNew(short)
	// A CA that ends in two hours caps the leaf; one within the backdate signs nothing.
	endsSoon := caEnding(t, "ends soon", now.Add(2*time.Hour))
	endsNow := caEnding(t, "ends now", now.Add(time.Minute))
	pubSoon := map[string]string{KeyCA: endsSoon.PEM, KeyCASigner: "cfssl"}
	pubNow := map[string]string{KeyCA: endsNow.PEM, KeyCASigner: "cfssl"}
	onlyDB1 := map[string]map[string]string{"db/0": {}, "db/1": {KeyCSR: csr1, KeyProfile: "peer"}}

	tests := []struct {
		name        string
		memory      LeaderMemory
		units       map[string]map[string]string
		leaderData  map[string]string
		policy      *policy.Policy
		ref         string
		want        []Action
		wantProblem string
	}{
		{name: "a CSR the signer refused for good is rejected with the signer's reason, carrying its CSR",
			memory: refused, units: units, leaderData: published,
			want: []Action{RejectCSR{Unit: "db/1", CSRPEM: csr1, Rejection: Rejection{CSRDigest: Digest(csr1), Reason: "invalid argument: bad CSR", Rule: RuleSigner, Profile: "peer", At: now, Recorded: now}}}},
		{name: "a CSR the signer failed on but not for good is signed again",
			memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable, SignFailures: map[string]SignFailure{Digest(csr1): {Internal: 2}}},
			units:  units, leaderData: published,
			want: []Action{SignCSR{Unit: "db/1", CSRPEM: csr1, Profile: "peer", Validity: day}}},
		{name: "the validity is capped by the policy",
			memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable}, units: units, leaderData: published, policy: shortPolicy,
			want: []Action{SignCSR{Unit: "db/1", CSRPEM: csr1, Profile: "peer", Validity: 6 * time.Hour}}},
		{name: "the validity is capped by the signing CA's expiry",
			memory: LeaderMemory{SignerCA: endsSoon.PEM, Signer: exportable}, units: onlyDB1, leaderData: pubSoon,
			want: []Action{SignCSR{Unit: "db/1", CSRPEM: csr1, Profile: "peer", Validity: 2 * time.Hour}}},
		{name: "a CA that expires within the backdate signs nothing, and says why",
			memory: LeaderMemory{SignerCA: endsNow.PEM, Signer: exportable}, units: onlyDB1, leaderData: pubNow,
			wantProblem: `the signer's CA "ends now" expires at`},
		{name: "with ca.ref the leader first loads the referenced CA",
			memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable}, units: units, leaderData: published, ref: "ref-1",
			want: []Action{LoadReferencedCA{Ref: "ref-1"}}},
		{name: "a signer without the referenced CA is given it",
			memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable, ReferencedCA: refCA.PEM}, units: units, leaderData: published, ref: "ref-1",
			want: []Action{ImportReferencedCA{Ref: "ref-1", CASHA256: caseal.Fingerprint(refCA.Cert.Raw)}}},
		{name: "a signer holding the referenced CA goes on",
			memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable, ReferencedCA: ca.PEM}, units: units, leaderData: published, ref: "ref-1",
			want: []Action{SignCSR{Unit: "db/1", CSRPEM: csr1, Profile: "peer", Validity: day}}},
		{name: "a signer that keeps another CA after the import is named, not fed the CA again",
			memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable, ReferencedCA: refCA.PEM, ImportedRef: caseal.Fingerprint(refCA.Cert.Raw)},
			units:  units, leaderData: published, ref: "ref-1",
			wantProblem: "still reports another CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(View{Unit: "db/0", Leader: true, Units: tt.units, LeaderData: tt.leaderData, Local: self,
				Memory: tt.memory, Now: now, Policy: tt.policy, CA: CATerms{Signer: "cfssl", Ref: tt.ref},
				Want: Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", RenewAt: 0.66, Validity: day}})
			if !strings.Contains(d.LeaderProblem, tt.wantProblem) || (tt.wantProblem == "") != (d.LeaderProblem == "") {
				t.Fatalf("leader problem = %q, want one containing %q", d.LeaderProblem, tt.wantProblem)
			}
			if got := leaderOnly(d.Actions); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("leader actions = %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// The wake time is the protocol's: the installed certificate's renewal for every unit,
// the earlier of that and the leader's timed work for the leader.
func TestWakeAtIsTheRenewal(t *testing.T) {
	ca := newCA(t, "group CA")
	key := newKey(t)
	cert, _ := ca.sign(t, key.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	want := Want{CommonName: "db/1", SANs: []string{"db-1"}, Profile: "peer", RenewAt: 0.5}
	d := Decide(View{Unit: "db/1", Units: map[string]map[string]string{"db/1": {KeyProfile: "peer"}},
		LeaderData: map[string]string{KeyCA: ca.PEM}, Now: now, Want: want,
		Local: Local{Installed: &Installed{Cert: cert, CAPEM: ca.PEM}}})
	if at := RenewalTime(cert, want); !d.WakeAt.Equal(at) || at.IsZero() {
		t.Fatalf("WakeAt = %s, want the renewal time %s", d.WakeAt, at)
	}
	if d := Decide(View{Unit: "db/1", Now: now, Want: want}); !d.WakeAt.IsZero() {
		t.Fatalf("a unit without a certificate wakes at %s, want never", d.WakeAt)
	}
}

// caEnding is a CA whose certificate ends at end.
func caEnding(t *testing.T, cn string, end time.Time) pkitest.CA {
	return pkitest.NewCA(t, cn, end.Add(-365*24*time.Hour))
}

// A leader that keeps an audit trail does nothing as leader until its lead is on it;
// a unit that loses the lead records it again when it leads again.
func TestALeaderActsOnlyOnceItsLeadIsOnRecord(t *testing.T) {
	ca := newCA(t, "group CA")
	v := View{Unit: "db/0", Leader: true, Now: now, Audited: true, Units: map[string]map[string]string{"db/0": {}},
		LeaderData: map[string]string{KeyCA: ca.PEM, KeyCASigner: "cfssl"}, CA: CATerms{Signer: "cfssl"},
		Want: Want{CommonName: "db/0", Validity: day}}
	leaderActions := func(v View) []Action {
		var out []Action
		for _, a := range Decide(v).Actions {
			switch a.(type) {
			case CreateCSR, PublishCSR, InstallCertificate, InstallCA, InstallCRL, WithdrawCSR:
			default:
				out = append(out, a)
			}
		}
		return out
	}
	for _, step := range []struct {
		name   string
		result Result
		want   []Action
	}{
		{"a new leader", nil, []Action{RecordLead{}}},
		{"its lead on record", LeadRecorded{}, []Action{LoadSignerCA{}}},
		{"its lead lost", LeadershipLost{}, []Action{RecordLead{}}},
	} {
		if step.result != nil {
			v.Memory = v.Memory.Step(step.result)
		}
		if got := leaderActions(v); !reflect.DeepEqual(got, step.want) {
			t.Fatalf("%s: leader actions %#v, want %#v", step.name, got, step.want)
		}
	}
	v.Audited, v.Memory = false, LeaderMemory{}
	if got := leaderActions(v); !reflect.DeepEqual(got, []Action{LoadSignerCA{}}) {
		t.Fatalf("a leader without an audit trail: %#v, want to load its signer's CA at once", got)
	}
}
