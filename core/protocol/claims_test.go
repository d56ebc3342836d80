package protocol

import (
	"crypto/x509/pkix"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
)

// The names and IPs a joined unit's certificate holds are that unit's: another unit
// asking for them is refused, by DNS name and by IP alike; shared names are anyone's.
func TestNamesHeldByOneUnitAreRefusedToAnother(t *testing.T) {
	rules := policy.Defaults()
	rules.SANs = []string{"*.web.internal", "10.1.0.0/16"}
	rules.SharedSANs = []string{"db.internal"}
	pol := policy.MustNew(rules)
	ca := newCA(t, "group CA")
	key0, key1 := newKey(t), newKey(t)
	_, cert0 := ca.Issue(t, key0.Public(), pkitest.Leaf{CN: "db/0", DNS: []string{"db-0", "app.web.internal", "db.internal"},
		IPs: []net.IP{net.ParseIP("10.1.0.9")}, NotBefore: now.Add(-1e12)})
	csr0 := csrFor(t, key0, "db/0", "db-0", "app.web.internal", "db.internal")
	ask := func(dns []string, ips ...string) string {
		r := pkitest.Request{Key: key1, Subject: pkix.Name{CommonName: "db/1"}, DNS: append([]string{"db-1"}, dns...)}
		for _, ip := range ips {
			r.IPs = append(r.IPs, net.ParseIP(ip))
		}
		return pkitest.MakeCSR(t, r)
	}
	tests := []struct {
		name       string
		csr        string
		wantReason string // "" when signed
	}{
		{"a DNS name db/0 holds", ask([]string{"app.web.internal"}), `"app.web.internal", which unit db/0 holds`},
		{"an IP db/0 holds", ask(nil, "10.1.0.9"), `IP 10.1.0.9, which unit db/0 holds`},
		{"a shared name db/0 holds too", ask([]string{"db.internal"}), ""},
		{"a name nobody holds", ask([]string{"other.web.internal"}, "10.1.0.10"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(View{Unit: "db/0", Leader: true, Policy: pol, Now: now, Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable},
				Units:      map[string]map[string]string{"db/0": {KeyCSR: csr0, KeyProfile: "peer"}, "db/1": {KeyCSR: tt.csr, KeyProfile: "peer"}},
				LeaderData: map[string]string{KeyCA: ca.PEM, KeyCASigner: "cfssl", SignedCertificateKey("db/0"): cert0},
				Local:      Local{Installed: &Installed{Cert: mustLeaf(t, cert0), CAPEM: ca.PEM}},
				CA:         CATerms{Signer: "cfssl"},
				Want:       Want{CommonName: "db/0", SANs: []string{"db-0", "app.web.internal", "db.internal", "10.1.0.9"}, Profile: "peer", Validity: day}})
			got := leaderOnly(d.Actions)
			if tt.wantReason == "" {
				if want := []Action{SignCSR{Unit: "db/1", CSRPEM: tt.csr, Profile: "peer", Validity: day}}; !reflect.DeepEqual(got, want) {
					t.Fatalf("leader actions = %#v, want db/1 signed", got)
				}
				return
			}
			r, ok := onlyRejection(got)
			if !ok || !strings.Contains(r.Rejection.Reason, tt.wantReason) || r.Rejection.Rule != string(policy.RuleHeld) {
				t.Fatalf("leader actions = %#v, want a rejection by rule held containing %q", got, tt.wantReason)
			}
		})
	}
}

func onlyRejection(actions []Action) (RejectCSR, bool) {
	if len(actions) != 1 {
		return RejectCSR{}, false
	}
	r, ok := actions[0].(RejectCSR)
	return r, ok
}

// The trust phase of a CA rotation signs nothing until every unit that holds a
// certificate reports that it trusts the new CA; a unit without a certificate is not
// waited for; then the new CA leads the bundle.
func TestRotationTrustPhaseWaits(t *testing.T) {
	old, next := newCA(t, "old CA"), newCA(t, "new CA")
	key0, key1 := newKey(t), newKey(t)
	_, cert0 := old.sign(t, key0.Public(), certOpts{cn: "db/0", dns: []string{"db-0"}})
	_, cert1 := old.sign(t, key1.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	rot := Rotation{Phase: PhaseTrust, From: caseal.Fingerprint(old.Cert.Raw), To: caseal.Fingerprint(next.Cert.Raw), Reason: "requested"}
	both := old.PEM + next.PEM
	trustsBoth := TrustsOf(both)
	trustsOld := TrustsOf(old.PEM)
	leaderData := map[string]string{KeyCA: both, KeyCASigner: "cfssl", KeyCARotation: rot.Encode(),
		SignedCertificateKey("db/0"): cert0, SignedCertificateKey("db/1"): cert1}
	status := func(serial, trusts string) map[string]string {
		return map[string]string{KeyCSR: "", KeyProfile: "peer", KeySerial: serial, KeyTrusts: trusts}
	}
	serial0, serial1 := mustLeaf(t, cert0).SerialNumber.Text(16), mustLeaf(t, cert1).SerialNumber.Text(16)
	tests := []struct {
		name    string
		units   map[string]map[string]string
		waiting []string // nil: the phase ends
	}{
		{"a unit that does not trust the new CA yet is waited for",
			map[string]map[string]string{"db/0": status(serial0, trustsBoth), "db/1": status(serial1, trustsOld)}, []string{"db/1"}},
		{"a unit reporting no trust at all is waited for",
			map[string]map[string]string{"db/0": status(serial0, trustsBoth), "db/1": status(serial1, "")}, []string{"db/1"}},
		{"a unit without a certificate is not waited for",
			map[string]map[string]string{"db/0": status(serial0, trustsBoth), "db/1": status("", "")}, nil},
		{"once every holder trusts it, the new CA leads the bundle",
			map[string]map[string]string{"db/0": status(serial0, trustsBoth), "db/1": status(serial1, trustsBoth)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(View{Unit: "db/0", Leader: true, Now: now, Memory: LeaderMemory{SignerCA: next.PEM, Signer: exportable},
				Units: tt.units, LeaderData: leaderData, CA: CATerms{Signer: "cfssl"},
				Local: Local{Installed: &Installed{Cert: mustLeaf(t, cert0), CAPEM: both}},
				Want:  Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", Validity: day}})
			var published string
			var recorded Rotation
			for _, a := range leaderOnly(d.Actions) {
				switch a := a.(type) {
				case PublishCA:
					published = a.BundlePEM
				case SetLeaderData:
					recorded, _ = DecodeRotation(a.KV[KeyCARotation])
				}
			}
			if tt.waiting != nil {
				if !reflect.DeepEqual(recorded.Waiting, tt.waiting) || recorded.Phase != PhaseTrust || !strings.Contains(d.CAState, "waiting for "+tt.waiting[0]) {
					t.Fatalf("rotation recorded %+v, CA state %q; want the trust phase waiting for %v", recorded, d.CAState, tt.waiting)
				}
				if published != "" {
					t.Fatalf("the trust phase published a new bundle while waiting")
				}
				return
			}
			if recorded.Phase != PhaseReissue || published != next.PEM+old.PEM {
				t.Fatalf("rotation recorded %+v, bundle published first CA new: %v; want the reissue phase led by the new CA",
					recorded, strings.HasPrefix(published, next.PEM))
			}
		})
	}
}
