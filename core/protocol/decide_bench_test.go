package protocol

import (
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// A leader's decision over a settled group: every unit's CSR and certificate checked
// again, with what the leader keeps parsed warm (the steady state of a leader) and with
// nothing kept (what each decision would cost without it).
func BenchmarkDecideLeader(b *testing.B) {
	for _, units := range []int{100, 1000} {
		v := leaderView(b, units)
		for _, kept := range []bool{true, false} {
			b.Run(fmt.Sprintf("units=%d/parsed=%v", units, kept), func(b *testing.B) {
				v := v
				if kept {
					v.Parsed = NewParsed()
					Decide(v)
				}
				b.ReportAllocs()
				for b.Loop() {
					Decide(v)
				}
			})
		}
	}
}

// A leader's decision over a settled group of 100 units with revoked certificates of
// departed units in force, and the CRL listing them: what every decision pays for the
// revocations the group holds (reading the records, checking the CRL against them).
//
//	go test -run '^$' -bench DecideLeaderWithRevocations ./core/protocol
func BenchmarkDecideLeaderWithRevocations(b *testing.B) {
	for _, revoked := range []int{0, 1000, 10000} {
		v, ca := leaderViewAndCA(b, 100)
		v.Memory.SignsCRL = true
		req := sdk.CRLRequest{ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(CRLLifetime - time.Hour), Number: big.NewInt(2)}
		for i := range revoked {
			unit := fmt.Sprintf("gone/%d", i)
			serial := big.NewInt(int64(1<<20 + i))
			v.LeaderData[RevocationKey(unit)] = encodeRevocations([]Revocation{{Unit: unit, Serial: serial.Text(16),
				NotAfter: now.Add(day), Departed: now.Add(-2 * time.Hour), Retired: true}})
			req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: serial, RevokedAt: now})
		}
		crl, err := certutil.NewCRL(ca.Cert, ca.Key, req)
		if err != nil {
			b.Fatal(err)
		}
		v.LeaderData[KeyCRL] = string(crl)
		v.Parsed = NewParsed()
		if d := Decide(v); len(leaderOnly(d.Actions)) != 0 {
			b.Fatalf("a settled group with %d revoked: %#v", revoked, leaderOnly(d.Actions))
		}
		b.Run(fmt.Sprintf("revoked=%d", revoked), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Decide(v)
			}
		})
	}
}

// The leader's check of one certificate its signer returned (IssueCheck), as a batch
// runs it: the CA bundle parsed once, the CSR and the chain each time.
//
//	go test -run '^$' -bench IssueCheck ./core/protocol
func BenchmarkIssueCheck(b *testing.B) {
	ca := newCA(b, "group CA")
	key := newKey(b)
	csr := csrFor(b, key, "db/1", "db-1")
	act := SignCSR{Unit: "db/1", CSRPEM: csr, Profile: "peer", Validity: day, CA: ca.PEM}
	parsed, err := certutil.ParseCSR([]byte(csr), "db/1")
	if err != nil {
		b.Fatal(err)
	}
	usages, _ := certutil.UsagesFor(sdk.ProfilePeer, parsed.PublicKey)
	chain, err := certutil.SignPlan{CSR: parsed, Usages: usages, Validity: day}.Sign(ca.Cert, ca.Key)
	if err != nil {
		b.Fatal(err)
	}
	var check IssueCheck
	b.ReportAllocs()
	for b.Loop() {
		if _, err := check.Check(act, string(chain), time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
