package protocol

import (
	"crypto/x509"
	"fmt"
	"maps"
	"math/big"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// leaderRun plays a leader deciding over time, carrying out its leader-data actions as
// an agent would (signing with ca), for the departure and revocation rules.
type leaderRun struct {
	t      *testing.T
	ca     testCA
	v      View
	signed int // SignCSR actions carried out
}

func newLeaderRun(t *testing.T, revokeAfter time.Duration) *leaderRun {
	ca := newCA(t, "group CA")
	r := &leaderRun{t: t, ca: ca, v: View{Unit: "db/0", Leader: true, Now: now, Parsed: NewParsed(),
		Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable, SignsCRL: true}, CA: CATerms{Signer: "cfssl"}, CRL: CRLTerms{RevokeAfter: revokeAfter},
		Units: map[string]map[string]string{"db/0": {}}, LeaderData: map[string]string{KeyCA: ca.PEM, KeyCASigner: "cfssl"},
		Want: Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", Validity: day}}}
	return r
}

// ask puts a new CSR of unit into its bag (joining it if it was away).
func (r *leaderRun) ask(unit string) {
	r.v.Units = maps.Clone(r.v.Units)
	r.v.Units[unit] = map[string]string{KeyCSR: csrFor(r.t, newKey(r.t), unit, UnitDNSName(unit)), KeyProfile: "peer"}
}

// bag sets unit's bag as it is put back after a lost lease, or removes it (nil).
func (r *leaderRun) bag(unit string, bag map[string]string) {
	r.v.Units = maps.Clone(r.v.Units)
	if bag == nil {
		delete(r.v.Units, unit)
	} else {
		r.v.Units[unit] = bag
	}
}

// decide lets the leader decide at now+at and carries out what it decided.
func (r *leaderRun) decide(at time.Duration) {
	r.t.Helper()
	r.v.Now = now.Add(at)
	d := Decide(r.v)
	ld := maps.Clone(r.v.LeaderData)
	for _, act := range leaderOnly(d.Actions) {
		switch act := act.(type) {
		case SetLeaderData:
			maps.Copy(ld, act.KV)
		case ForgetUnit:
			ld[SignedCertificateKey(act.Unit)], ld[RejectionKey(act.Unit)], ld[IssuedKey(act.Unit)] = "", "", ""
		case SignCSR:
			r.signed++
			_, chain := r.ca.sign(r.t, parseCSR(r.t, act.CSRPEM).PublicKey, certOpts{cn: act.Unit, dns: []string{UnitDNSName(act.Unit)}})
			ld[SignedCertificateKey(act.Unit)], ld[IssuedKey(act.Unit)] = chain, act.Earlier
		case SignCRL:
			req := sdk.CRLRequest{ThisUpdate: act.Now, NextUpdate: act.Now.Add(CRLLifetime), Number: act.Number}
			for _, rev := range act.Revoked {
				serial, _ := new(big.Int).SetString(rev.Serial, 16)
				req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: serial, RevokedAt: rev.Departed})
			}
			crl, err := certutil.NewCRL(r.ca.Cert, r.ca.Key, req)
			if err != nil {
				r.t.Fatal(err)
			}
			ld[KeyCRL] = string(crl)
		default:
			r.t.Fatalf("unexpected leader action %T", act)
		}
	}
	maps.DeleteFunc(ld, func(_, v string) bool { return v == "" })
	r.v.LeaderData = ld
}

// serial is the serial of unit's certificate in leader data.
func (r *leaderRun) serial(unit string) string {
	return mustLeaf(r.t, r.v.LeaderData[SignedCertificateKey(unit)]).SerialNumber.Text(16)
}

// revoked lists the serials recorded for revocation; inForce only those in force.
func (r *leaderRun) revoked(inForce bool) []string {
	var out []string
	for _, rev := range RevocationsOf(r.v.LeaderData) {
		if !inForce || rev.effective(r.v.Now, r.v.CRL.RevokeAfter) {
			out = append(out, rev.Serial)
		}
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// A departure revokes every certificate issued to the unit, the ones it renewed away
// included, and nothing the unit reports counts: the serial on its disk is revoked even
// after a blip made it rejoin with an older one.
func TestDepartureRevokesEverythingIssued(t *testing.T) {
	r := newLeaderRun(t, 30*time.Second)
	r.ask("db/1")
	r.decide(0)
	first := r.serial("db/1")
	r.ask("db/1") // a renewal
	r.decide(time.Second)
	second := r.serial("db/1")
	if r.signed != 2 || first == second {
		t.Fatalf("signed %d certificates, serials %s and %s", r.signed, first, second)
	}
	r.bag("db/1", map[string]string{KeySerial: first}) // back, reporting the first: not taken on its word
	r.decide(2 * time.Second)
	r.bag("db/1", nil) // gone
	r.decide(3 * time.Second)
	if got := r.revoked(false); !slices.Equal(got, sorted(first, second)) {
		t.Fatalf("recorded for revocation %v, want both issued %v", got, sorted(first, second))
	}
	if r.v.LeaderData[SignedCertificateKey("db/1")] == "" {
		t.Fatal("the certificate of a unit away for less than the delay left leader data")
	}
	r.decide(34 * time.Second)
	if got := r.revoked(true); !slices.Equal(got, sorted(first, second)) {
		t.Fatalf("in force %v, want %v", got, sorted(first, second))
	}
	// Its leader data holds its names until the published CRL lists both (claims.go).
	if r.v.LeaderData[SignedCertificateKey("db/1")] == "" {
		t.Fatal("the certificate of a revoked unit left leader data before a CRL listed it")
	}
	r.decide(35 * time.Second)
	for _, key := range []string{SignedCertificateKey("db/1"), IssuedKey("db/1")} {
		if r.v.LeaderData[key] != "" {
			t.Errorf("%s kept after the CRL listed its certificates", key)
		}
	}
}

// A blip is not a departure: a unit back within the delay keeps its certificate, is not
// signed another, and a later departure for good is still revoked, whichever leader sees
// it. The bag it comes back with is what it wrote before (the lease lost: with the CSR
// it sent, or with that withdrawn once installed), or nothing yet (the agent restarted).
func TestBlipIsNotADeparture(t *testing.T) {
	for _, back := range []string{"with its CSR", "CSR withdrawn", "restarted"} {
		r := newLeaderRun(t, 30*time.Second)
		r.ask("db/1")
		r.decide(0)
		serial := r.serial("db/1")
		bag := maps.Clone(r.v.Units["db/1"])
		bag[KeySerial] = serial
		switch back {
		case "CSR withdrawn":
			delete(bag, KeyCSR)
		case "restarted":
			bag = map[string]string{}
		}
		withCSR := back
		r.bag("db/1", nil) // cut for 8 s
		r.decide(time.Second)
		r.bag("db/1", bag)
		r.decide(9 * time.Second)
		if len(r.revoked(false)) != 0 || r.signed != 1 || r.serial("db/1") != serial {
			t.Fatalf("back %s: after a blip, recorded %v, signed %d, serial %s (was %s)",
				withCSR, r.revoked(false), r.signed, r.serial("db/1"), serial)
		}
		r.v.Parsed = NewParsed() // a new leader
		r.bag("db/1", nil)       // stopped for good
		r.decide(20 * time.Second)
		r.decide(51 * time.Second)
		if got := r.revoked(true); !slices.Equal(got, []string{serial}) || r.signed != 1 {
			t.Fatalf("back %s: a unit gone for good has %v in force (want [%s]), signed %d",
				withCSR, got, serial, r.signed)
		}
	}
}

// A unit with nothing issued (a rejection only) is forgotten at once.
func TestDepartureWithNothingIssued(t *testing.T) {
	r := newLeaderRun(t, time.Hour)
	r.v.LeaderData[RejectionKey("db/7")] = Rejection{CSRDigest: "x", Reason: "no"}.Encode()
	r.decide(0)
	if r.v.LeaderData[RejectionKey("db/7")] != "" || len(r.revoked(false)) != 0 {
		t.Fatalf("leader data %v", r.v.LeaderData)
	}
}

func parseCSR(t testing.TB, csrPEM string) *x509.CertificateRequest {
	t.Helper()
	csr, err := certutil.ParseCSR([]byte(csrPEM), "")
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// A unit's note decides what its departure means: NoteGone revokes at once, NoteBack
// revokes nothing and keeps its leader data for its return until its certificates
// expire, and no note is a departure revoked after the delay.
func TestDepartureNotes(t *testing.T) {
	for _, tt := range []struct {
		note          string
		at            time.Duration
		inForce, kept bool
		recordedAtAll bool
	}{
		{note: "", at: time.Minute, inForce: false, kept: true, recordedAtAll: true},
		{note: "", at: time.Hour + time.Minute, inForce: true, kept: false, recordedAtAll: true},
		{note: NoteGone, at: time.Second, inForce: true, kept: false, recordedAtAll: true},
		{note: NoteBack, at: 2 * time.Hour, inForce: false, kept: true, recordedAtAll: false},
		{note: NoteBack, at: 31 * 24 * time.Hour, inForce: false, kept: false, recordedAtAll: false}, // its certificate expired
		{note: "some later version's note", at: time.Hour + time.Minute, inForce: true, kept: false, recordedAtAll: true},
	} {
		r := newLeaderRun(t, time.Hour)
		r.ask("db/1")
		r.decide(0)
		serial := r.serial("db/1")
		r.bag("db/1", nil)
		r.v.Away = map[string]string{"db/1": tt.note}
		r.decide(time.Second) // the leader notices at once
		r.decide(tt.at)
		r.decide(tt.at + time.Second) // a CRL signed at tt.at lets it forget the unit
		inForce := slices.Equal(r.revoked(true), []string{serial})
		kept := r.v.LeaderData[SignedCertificateKey("db/1")] != ""
		recorded := len(RevocationsOf(r.v.LeaderData)) > 0 || inForce
		if tt.at > 30*24*time.Hour {
			recorded = false // expired: gone from the list either way
		}
		if inForce != tt.inForce || kept != tt.kept || recorded != tt.recordedAtAll {
			t.Errorf("note %q, %s after leaving: in force %v, leader data kept %v, recorded %v; want %v, %v, %v",
				tt.note, tt.at, inForce, kept, recorded, tt.inForce, tt.kept, tt.recordedAtAll)
		}
	}
}

// Revocations are read in the order of their serials' values, the order a CRL lists
// them in, so a CRL that lists the same serials is not signed again ("1f" after "a").
func TestRevocationsInSerialOrder(t *testing.T) {
	ca := newCA(t, "group CA")
	inForce := []Revocation{{Unit: "db/1", Serial: "a", NotAfter: now.Add(day), Departed: now.Add(-2 * time.Hour)},
		{Unit: "db/2", Serial: "1f", NotAfter: now.Add(day), Departed: now.Add(-2 * time.Hour)}}
	req := sdk.CRLRequest{ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(CRLLifetime - time.Hour), Number: big.NewInt(3)}
	for _, s := range []int64{10, 31} {
		req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: big.NewInt(s), RevokedAt: now})
	}
	crl, err := certutil.NewCRL(ca.Cert, ca.Key, req)
	if err != nil {
		t.Fatal(err)
	}
	v := View{Unit: "db/0", Leader: true, Now: now, Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable, SignsCRL: true},
		Units: map[string]map[string]string{"db/0": {}}, CRL: CRLTerms{RevokeAfter: time.Hour},
		LeaderData: map[string]string{KeyCA: ca.PEM, KeyCRL: string(crl),
			RevocationKey("db/2"): encodeRevocations(inForce[1:]), RevocationKey("db/1"): encodeRevocations(inForce[:1])}}
	actions, wake := planRevocations(v, ca.PEM, nil)
	if len(actions) != 0 || !wake.Equal(now.Add(CRLLifetime/2)) {
		t.Fatalf("actions %#v, wake %s; want no new CRL", actions, wake)
	}
	if got := RevocationsOf(v.LeaderData); !reflect.DeepEqual(got, inForce) {
		t.Fatalf("RevocationsOf = %+v, want them in serial order %+v", got, inForce)
	}
}

// A departure writes its own unit's revocations and nothing of the others': what the
// leader writes for one more revoked unit does not grow with how many are revoked
// already (the group's list in one value outgrew an etcd request at ~10,000).
func TestADepartureWritesOnlyItsOwnRevocations(t *testing.T) {
	ca := newCA(t, "group CA")
	key := newKey(t)
	_, cert := ca.sign(t, key.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	leaderData := map[string]string{KeyCA: ca.PEM, SignedCertificateKey("db/1"): cert}
	for i := range 1000 {
		unit := fmt.Sprintf("old/%d", i)
		leaderData[RevocationKey(unit)] = encodeRevocations([]Revocation{{Unit: unit, Serial: fmt.Sprintf("%x", 1<<20+i),
			NotAfter: now.Add(day), Departed: now.Add(-2 * time.Hour)}})
	}
	v := View{Unit: "db/0", Leader: true, Now: now, Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable},
		Units: map[string]map[string]string{"db/0": {}}, LeaderData: leaderData, CRL: CRLTerms{RevokeAfter: time.Hour}}
	actions, list := planDepartures(v, nil)
	if len(list) != 1001 {
		t.Fatalf("%d revocations listed, want the 1,000 recorded and db/1's", len(list))
	}
	set, ok := actions[0].(SetLeaderData)
	if !ok || len(set.KV) != 1 || set.KV[RevocationKey("db/1")] == "" {
		t.Fatalf("first action %#v: want one write, db/1's revocations", actions[0])
	}
}

// A departure counts from when the store saw the unit leave (View.Left), not from the
// decision that meets it: a leader whose decisions were held up (a store that answered
// slowly) revokes on time. One the store did not see counts from the decision.
func TestADepartureCountsFromWhenTheStoreSawIt(t *testing.T) {
	for _, seen := range []bool{true, false} {
		t.Run(fmt.Sprintf("seen %t", seen), func(t *testing.T) {
			r := newLeaderRun(t, 30*time.Second)
			r.ask("db/1")
			r.decide(0)
			held := r.serial("db/1")
			r.bag("db/1", nil) // gone at 1 s; the leader's next decision runs at 20 s
			if seen {
				r.v.Left = map[string]time.Time{"db/1": now.Add(time.Second)}
			}
			r.decide(20 * time.Second)
			r.decide(32 * time.Second) // 31 s after it left, 12 s after the decision that met it
			if got, want := r.revoked(true), []string{held}; seen != slices.Equal(got, want) {
				t.Fatalf("in force at 32 s: %v; want %v in force only if the store saw it leave at 1 s", got, want)
			}
		})
	}
}
