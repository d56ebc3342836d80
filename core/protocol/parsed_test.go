package protocol

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// leaderView is a leader's view of n units, each with a CSR and a certificate signed for
// it, and a pending CRL key.
func leaderView(t testing.TB, n int) View {
	v, _ := leaderViewAndCA(t, n)
	return v
}

// leaderViewAndCA is leaderView and the group's CA.
func leaderViewAndCA(t testing.TB, n int) (View, testCA) {
	ca := newCA(t, "group CA")
	v := View{Unit: "db/0", Leader: true, Now: now, Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable},
		Units: map[string]map[string]string{}, LeaderData: map[string]string{KeyCA: ca.PEM},
		Want: Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", Validity: day}}
	for i := range n {
		unit := fmt.Sprintf("db/%d", i)
		key := newKey(t)
		_, chain := ca.sign(t, key.Public(), certOpts{cn: unit, dns: []string{UnitDNSName(unit)}})
		v.Units[unit] = map[string]string{KeyCSR: csrFor(t, key, unit, UnitDNSName(unit)), KeyProfile: "peer",
			KeySerial: mustLeaf(t, chain).SerialNumber.Text(16)}
		v.LeaderData[SignedCertificateKey(unit)] = chain
	}
	return v, ca
}

// firstCert is the parsed certificate kept under a leader-data key, or nil.
func (p *Parsed) firstCert(key string) any {
	s := p.slots[slotKey{place: inLeaderData, key: key}]
	if s == nil || len(s.certs) == 0 {
		return nil
	}
	return s.certs[0]
}

// A value is parsed when it first is read and again only when the value under its key
// changes: the other keys keep what they gave.
func TestParsedParsesWhatChanged(t *testing.T) {
	v := leaderView(t, 3)
	v.Parsed = NewParsed()
	if d := Decide(v); len(leaderOnly(d.Actions)) != 0 {
		t.Fatalf("a settled group: %v", d.Actions)
	}
	kept := map[string]any{}
	for _, u := range []string{"db/0", "db/1", "db/2"} {
		if kept[u] = v.Parsed.firstCert(SignedCertificateKey(u)); kept[u] == nil {
			t.Fatalf("%s's certificate was not kept", u)
		}
		if s := v.Parsed.slots[slotKey{place: inBag, unit: u, key: KeyCSR}]; s == nil || s.csr == nil {
			t.Fatalf("%s's verified CSR was not kept", u)
		}
	}
	// db/1's certificate changes (the one of db/2, for another key: it must be re-signed).
	changed := v
	changed.LeaderData = maps.Clone(v.LeaderData)
	changed.LeaderData[SignedCertificateKey("db/1")] = v.LeaderData[SignedCertificateKey("db/2")]
	assertActions(t, leaderOnly(Decide(changed).Actions), SignCSR{Unit: "db/1", CSRPEM: v.Units["db/1"][KeyCSR], Profile: "peer", Validity: day,
		Earlier: issuedRecord(t, changed.LeaderData[SignedCertificateKey("db/1")])})
	for u, same := range map[string]bool{"db/0": true, "db/1": false, "db/2": true} {
		if got := changed.Parsed.firstCert(SignedCertificateKey(u)); (got == kept[u]) != same {
			t.Errorf("%s's certificate: kept the earlier parse %v, want %v", u, got == kept[u], same)
		}
	}
}

// Forget drops what was kept for departed units and deleted keys, and only that.
func TestParsedForget(t *testing.T) {
	v := leaderView(t, 3)
	v.Parsed = NewParsed()
	Decide(v)
	gone := v
	gone.Units = maps.Clone(v.Units)
	delete(gone.Units, "db/2")
	gone.LeaderData = maps.Clone(v.LeaderData)
	delete(gone.LeaderData, SignedCertificateKey("db/2"))
	v.Parsed.Forget(gone)
	for k := range v.Parsed.slots {
		if k.unit == "db/2" || k.key == SignedCertificateKey("db/2") {
			t.Errorf("%+v kept after db/2 left", k)
		}
	}
	for _, k := range []slotKey{{place: inLeaderData, key: KeyCA}, {place: inLeaderData, key: SignedCertificateKey("db/1")},
		{place: inBag, unit: "db/1", key: KeyCSR}, {place: own, key: ownSignerCA}} {
		if v.Parsed.slots[k] == nil {
			t.Errorf("%+v dropped though the view holds it", k)
		}
	}
	(*Parsed)(nil).Forget(gone) // a nil Parsed keeps nothing and forgets nothing
}

// A unit whose installed certificate is the one in leader data verifies it once: what
// it verified while it waited serves once it is installed.
func TestParsedInstalledIsTheSignedOne(t *testing.T) {
	v := leaderView(t, 2)
	v.Leader, v.Unit, v.Memory = false, "db/1", LeaderMemory{}
	v.Want.CommonName, v.Want.SANs = "db/1", []string{"db-1"}
	cert := mustLeaf(t, v.LeaderData[SignedCertificateKey("db/1")])
	v.Local = Local{Installed: &Installed{Cert: cert, CAPEM: v.LeaderData[KeyCA]}}
	v.Parsed = NewParsed()
	delete(v.Units["db/1"], KeyCSR) // answered and withdrawn
	if d := Decide(v); d.State != StateCertificateAvailable || len(d.Actions) != 0 {
		t.Fatalf("a unit holding its certificate: %s %v", d.State, d.Actions)
	}
	if s := v.Parsed.slots[slotKey{place: own, key: ownInstalled}]; s != nil {
		t.Error("the installed certificate was parsed and verified apart from the signed one")
	}
	if s := v.Parsed.slots[slotKey{place: inLeaderData, key: SignedCertificateKey("db/1")}]; s == nil || s.chainCA != v.LeaderData[KeyCA] {
		t.Error("the verified chain was not kept with the signed certificate")
	}
	// The installed CA bundle is the group's: its fingerprints come from that parse.
	if got, want := v.Parsed.TrustsOf(v.LeaderData[KeyCA]), TrustsOf(v.LeaderData[KeyCA]); got != want || v.Parsed.slots[slotKey{place: own, key: ownTrusted}] != nil {
		t.Errorf("TrustsOf = %q (want %q), parsed apart from the group's bundle: %v", got, want, v.Parsed.slots[slotKey{place: own, key: ownTrusted}] != nil)
	}
}

// What a unit keeps of a chain it verified holds for that CA bundle only: a group that
// moved to another CA finds the same certificate not chaining.
func TestParsedVerifiedChainIsForItsCA(t *testing.T) {
	ca, other := newCA(t, "group CA"), newCA(t, "stranger CA")
	key := newKey(t)
	cert, _ := ca.sign(t, key.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	v := View{Unit: "db/1", Now: now, Parsed: NewParsed(), Units: map[string]map[string]string{"db/1": {KeyProfile: "peer"}},
		LeaderData: map[string]string{KeyCA: ca.PEM}, Local: Local{Installed: &Installed{Cert: cert, CAPEM: ca.PEM}},
		Want: Want{CommonName: "db/1", SANs: []string{"db-1"}, Profile: "peer", RenewAt: 0.66}}
	if d := Decide(v); d.State != StateCertificateAvailable {
		t.Fatalf("under its own CA: %s (%s)", d.State, d.Detail)
	}
	v.LeaderData = map[string]string{KeyCA: other.PEM}
	if d := Decide(v); d.State != StateCreateCSR || !strings.Contains(d.Detail, "does not chain") {
		t.Fatalf("under another CA, with the first verification kept: %s (%s)", d.State, d.Detail)
	}
}
