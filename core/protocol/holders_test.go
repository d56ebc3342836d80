package protocol

import (
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// One name, one holder, whoever holds it and however the requests arrive. Each case is a
// leader's decision over one snapshot; db/2 asks for "svc.web.internal" and 10.1.0.7 (or
// db/1 and db/2 both do), and the case says who may have them.
func TestOneHolderPerName(t *testing.T) {
	rules := policy.Defaults()
	rules.SANs = []string{"*.web.internal", "10.1.0.0/16"}
	pol := policy.MustNew(rules)
	ca := newCA(t, "group CA")
	key1, key2 := newKey(t), newKey(t)
	ask := func(unit string, key any) string {
		r := pkitest.Request{Key: key1, Subject: pkix.Name{CommonName: unit}, DNS: []string{UnitDNSName(unit), "svc.web.internal"},
			IPs: []net.IP{net.ParseIP("10.1.0.7")}}
		if unit == "db/2" {
			r.Key = key2
		}
		return pkitest.MakeCSR(t, r)
	}
	csr1, csr2 := ask("db/1", key1), ask("db/2", key2)
	// db/1's certificate for the names, valid for 30 days.
	leaf1, cert1 := ca.Issue(t, key1.Public(), pkitest.Leaf{CN: "db/1", DNS: []string{"db-1", "svc.web.internal"},
		IPs: []net.IP{net.ParseIP("10.1.0.7")}, NotBefore: now.Add(-time.Hour)})
	serial1 := leaf1.SerialNumber.Text(16)
	// db/1's current certificate, without the names: it renewed them away.
	_, renewed1 := ca.Issue(t, key1.Public(), pkitest.Leaf{CN: "db/1", DNS: []string{"db-1"}, NotBefore: now.Add(-time.Minute)})
	crlListing := func(serials ...*big.Int) string {
		req := sdk.CRLRequest{ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(CRLLifetime), Number: big.NewInt(3)}
		for _, s := range serials {
			req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: s, RevokedAt: now.Add(-time.Minute)})
		}
		crl, err := certutil.NewCRL(ca.Cert, ca.Key, req)
		if err != nil {
			t.Fatal(err)
		}
		return string(crl)
	}
	heldRefusal := Rejection{CSRDigest: Digest(csr2), Reason: "it asks for \"svc.web.internal\", which unit db/1 holds", Rule: string(policy.RuleHeld), Profile: "peer", At: now.Add(-time.Minute)}
	self := map[string]string{KeyProfile: "peer"}
	base := map[string]string{KeyCA: ca.PEM, KeyCASigner: "cfssl"}
	tests := []struct {
		name       string
		units      map[string]map[string]string
		leaderData map[string]string
		away       map[string]string
		signed     []string // units signed, in order
		refused    string   // a unit refused as asking for a held name, naming its holder db/1
		nothing    bool     // neither signed nor refused
	}{
		{name: "two CSRs for one name in one snapshot: the first in unit order is signed, the other refused before signing",
			units:      map[string]map[string]string{"db/0": self, "db/1": {KeyCSR: csr1, KeyProfile: "peer"}, "db/2": {KeyCSR: csr2, KeyProfile: "peer"}},
			leaderData: base, signed: []string{"db/1"}, refused: "db/2"},
		{name: "a holder whose lease lapsed still holds its names",
			units:      map[string]map[string]string{"db/0": self, "db/2": {KeyCSR: csr2, KeyProfile: "peer"}},
			leaderData: merged(base, SignedCertificateKey("db/1"), cert1), refused: "db/2"},
		{name: "a holder that said it will be back still holds its names",
			units:      map[string]map[string]string{"db/0": self, "db/2": {KeyCSR: csr2, KeyProfile: "peer"}},
			leaderData: merged(base, SignedCertificateKey("db/1"), cert1), away: map[string]string{"db/1": NoteBack}, refused: "db/2"},
		{name: "a certificate the holder renewed away still holds its names until it expires",
			units: map[string]map[string]string{"db/0": self, "db/1": {KeyProfile: "peer"}, "db/2": {KeyCSR: csr2, KeyProfile: "peer"}},
			leaderData: merged(base, SignedCertificateKey("db/1"), renewed1,
				IssuedKey("db/1"), encodeIssued([]Issued{{Serial: serial1, NotAfter: leaf1.NotAfter, Names: []string{"10.1.0.7", "db-1", "svc.web.internal"}}})),
			refused: "db/2"},
		{name: "a holder revoked by the published CRL holds nothing",
			units:      map[string]map[string]string{"db/0": self, "db/2": {KeyCSR: csr2, KeyProfile: "peer"}},
			leaderData: merged(base, SignedCertificateKey("db/1"), cert1, KeyCRL, crlListing(leaf1.SerialNumber)), signed: []string{"db/2"}},
		{name: "a refusal for a held name stands while the name is held, and is not written again",
			units:      map[string]map[string]string{"db/0": self, "db/2": {KeyCSR: csr2, KeyProfile: "peer"}},
			leaderData: merged(base, SignedCertificateKey("db/1"), cert1, RejectionKey("db/2"), heldRefusal.Encode()), nothing: true},
		{name: "a CSR refused for a held name is signed once the name is released",
			units: map[string]map[string]string{"db/0": self, "db/2": {KeyCSR: csr2, KeyProfile: "peer"}},
			leaderData: merged(base, SignedCertificateKey("db/1"), cert1, KeyCRL, crlListing(leaf1.SerialNumber),
				RejectionKey("db/2"), heldRefusal.Encode()), signed: []string{"db/2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(View{Unit: "db/0", Leader: true, Policy: pol, Now: now, Units: tt.units, LeaderData: tt.leaderData, Away: tt.away,
				Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable}, CA: CATerms{Signer: "cfssl"},
				Want: Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", Validity: day}})
			var signed []string
			var refusals []RejectCSR
			for _, a := range d.Actions {
				switch a := a.(type) {
				case SignCSR:
					signed = append(signed, a.Unit)
				case RejectCSR:
					refusals = append(refusals, a)
				}
			}
			if strings.Join(signed, ",") != strings.Join(tt.signed, ",") {
				t.Fatalf("signed %v, want %v", signed, tt.signed)
			}
			switch {
			case tt.refused != "":
				if len(refusals) != 1 || refusals[0].Unit != tt.refused || refusals[0].Rejection.Rule != string(policy.RuleHeld) ||
					!strings.Contains(refusals[0].Rejection.Reason, "which unit db/1 holds") {
					t.Fatalf("refusals %+v, want %s refused by rule held, naming db/1", refusals, tt.refused)
				}
			case len(refusals) > 0:
				t.Fatalf("refusals %+v, want none", refusals)
			}
			if tt.nothing && len(signed)+len(refusals) > 0 {
				t.Fatalf("signed %v, refused %v; want nothing done", signed, refusals)
			}
		})
	}
}
