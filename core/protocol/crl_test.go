package protocol

import (
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// The leader revokes the certificates of units that departed, once they have been gone
// ca.revoke_departed_after, and keeps the CRL current; a unit back in time keeps its
// certificate; a unit back too late renews; every unit installs the CRL.
func TestRevocation(t *testing.T) {
	ca, other := newCA(t, "group CA"), newCA(t, "next CA")
	key0, key1 := newKey(t), newKey(t)
	leaf0, cert0 := ca.sign(t, key0.Public(), certOpts{cn: "db/0", dns: []string{"db-0"}})
	leaf1, cert1 := ca.sign(t, key1.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	serial1 := leaf1.SerialNumber.Text(16)
	crl := func(signer testCA, number int64, thisUpdate time.Time, serials ...*big.Int) string {
		req := sdk.CRLRequest{ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(CRLLifetime), Number: big.NewInt(number)}
		for _, s := range serials {
			req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: s, RevokedAt: thisUpdate})
		}
		pem, err := certutil.NewCRL(signer.Cert, signer.Key, req)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem)
	}
	gone := func(departed time.Time) Revocation {
		return Revocation{Unit: "db/1", Serial: serial1, NotAfter: leaf1.NotAfter, Departed: departed}
	}
	list := func(r ...Revocation) string { return encodeRevocations(r) }
	self := Local{Installed: &Installed{Cert: leaf0, CAPEM: ca.PEM}}
	bag0 := map[string]string{KeyCSR: csrFor(t, key0, "db/0", "db-0"), KeyProfile: "peer", KeySerial: leaf0.SerialNumber.Text(16)}
	alone := map[string]map[string]string{"db/0": bag0}
	base := map[string]string{KeyCA: ca.PEM, KeyCASigner: "cfssl", SignedCertificateKey("db/0"): cert0}
	with := func(kv ...string) map[string]string { return merged(base, kv...) }
	emptyCRL := crl(ca, 4, now.Add(-time.Hour))
	tests := []struct {
		name        string
		units       map[string]map[string]string
		leaderData  map[string]string
		enabled     bool
		revokeAfter time.Duration
		want        []Action
		wake        time.Time
	}{
		{name: "a departure with revoke_after 0 is revoked at once",
			units: alone, leaderData: with(SignedCertificateKey("db/1"), cert1, KeyCRL, emptyCRL), enabled: true,
			want: []Action{SetLeaderData{KV: map[string]string{RevocationKey("db/1"): list(gone(now))}},
				SignCRL{Revoked: []Revocation{gone(now)}, Number: big.NewInt(5), Now: now}}},
		{name: "a departed unit is forgotten once the published CRL lists its certificate, not before",
			units: alone, leaderData: with(SignedCertificateKey("db/1"), cert1, RevocationKey("db/1"), list(gone(now.Add(-time.Minute))),
				KeyCRL, crl(ca, 5, now.Add(-time.Second), leaf1.SerialNumber)), enabled: true,
			want: []Action{ForgetUnit{Unit: "db/1"}}, wake: now.Add(CRLLifetime / 2)},
		{name: "a departure within revoke_after is recorded, not yet revoked; the leader wakes when it takes effect",
			units: alone, leaderData: with(RevocationKey("db/1"), list(gone(now.Add(-10*time.Minute))), KeyCRL, emptyCRL), enabled: true,
			revokeAfter: time.Hour, wake: now.Add(50 * time.Minute)},
		{name: "a unit back with its certificate before it is revoked keeps it",
			units:      map[string]map[string]string{"db/0": bag0, "db/1": {KeySerial: serial1}},
			leaderData: with(RevocationKey("db/1"), list(gone(now.Add(-10*time.Minute))), KeyCRL, emptyCRL), enabled: true, revokeAfter: time.Hour,
			want: []Action{SetLeaderData{KV: map[string]string{RevocationKey("db/1"): ""}}}, wake: now.Add(CRLLifetime / 2)},
		{name: "a unit back after its certificate was revoked stays revoked",
			units:      map[string]map[string]string{"db/0": bag0, "db/1": {KeySerial: serial1}},
			leaderData: with(RevocationKey("db/1"), list(gone(now.Add(-2*time.Hour))), KeyCRL, crl(ca, 5, now.Add(-time.Hour), leaf1.SerialNumber)),
			enabled:    true, revokeAfter: time.Hour, wake: now.Add(CRLLifetime / 2)},
		{name: "an expired certificate leaves the list and the CRL",
			units:      alone,
			leaderData: with(RevocationKey("db/1"), list(Revocation{Unit: "db/1", Serial: serial1, NotAfter: now.Add(-time.Minute), Departed: now.Add(-48 * time.Hour)}), KeyCRL, crl(ca, 5, now.Add(-time.Hour), leaf1.SerialNumber)),
			enabled:    true,
			want:       []Action{SetLeaderData{KV: map[string]string{RevocationKey("db/1"): ""}}, SignCRL{Number: big.NewInt(6), Now: now}}},
		{name: "an earlier version's list of the group moves to one key per unit, and signs nothing new",
			units: alone, leaderData: with(KeyRevoked, list(gone(now.Add(-2*time.Hour))), KeyCRL, crl(ca, 5, now.Add(-time.Hour), leaf1.SerialNumber)),
			enabled: true, revokeAfter: time.Hour, wake: now.Add(CRLLifetime / 2),
			want: []Action{SetLeaderData{KV: map[string]string{KeyRevoked: "", RevocationKey("db/1"): list(gone(now.Add(-2 * time.Hour)))}}}},
		{name: "a CRL past half its life is signed again",
			units: alone, leaderData: with(KeyCRL, crl(ca, 9, now.Add(-13*time.Hour))), enabled: true,
			want: []Action{SignCRL{Number: big.NewInt(10), Now: now}}},
		{name: "a CRL of another CA (a rotation) is signed again by the signing CA",
			units: alone, leaderData: with(KeyCRL, crl(other, 2, now)), enabled: true,
			want: []Action{SignCRL{Number: big.NewInt(3), Now: now}}},
		{name: "the first CRL, with nothing revoked, so ca.crl always exists",
			units: alone, leaderData: base, enabled: true,
			want: []Action{SignCRL{Number: big.NewInt(1), Now: now}}},
		{name: "a signer without CRLs still records departures, signs nothing, and keeps the unit's names until they expire",
			units: alone, leaderData: with(SignedCertificateKey("db/1"), cert1),
			want: []Action{SetLeaderData{KV: map[string]string{RevocationKey("db/1"): list(gone(now))}}}},
	}
	want := Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", RenewAt: 0.66}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(View{Unit: "db/0", Leader: true, Units: tt.units, LeaderData: tt.leaderData, Local: self,
				Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable, SignsCRL: tt.enabled}, Now: now, CA: CATerms{Signer: "cfssl"},
				CRL: CRLTerms{RevokeAfter: tt.revokeAfter}, Want: want})
			got := leaderOnly(d.Actions)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("leader actions = %#v\nwant %#v", got, tt.want)
			}
			// The leader's own certificate's renewal bounds the wake too.
			if wake := earliestSet(tt.wake, RenewalTime(self.Installed.Cert, want)); !d.WakeAt.Equal(wake) {
				t.Fatalf("wake at %s, want %s", d.WakeAt, wake)
			}
		})
	}
}

func TestUnitsInstallTheCRLAndRenewWhenRevoked(t *testing.T) {
	ca := newCA(t, "group CA")
	key := newKey(t)
	leaf, _ := ca.sign(t, key.Public(), certOpts{cn: "db/1", dns: []string{"db-1"}})
	mk := func(serials ...*big.Int) string {
		req := sdk.CRLRequest{ThisUpdate: now, NextUpdate: now.Add(CRLLifetime), Number: big.NewInt(1)}
		for _, s := range serials {
			req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: s, RevokedAt: now})
		}
		pem, _ := certutil.NewCRL(ca.Cert, ca.Key, req)
		return string(pem)
	}
	clean, revoking := mk(big.NewInt(99)), mk(leaf.SerialNumber)
	tests := []struct {
		name      string
		local     string
		published string
		state     State
		install   bool
	}{
		{"a new CRL is installed", "", clean, StateCertificateAvailable, true},
		{"the CRL held already: nothing", clean, clean, StateCertificateAvailable, false},
		{"a CRL that revokes the unit's certificate: renew, and install it", clean, revoking, StateRenewalDue, true},
		{"no CRL published: nothing", "", "", StateCertificateAvailable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(View{Unit: "db/1", Units: map[string]map[string]string{"db/1": {KeyProfile: "peer"}},
				LeaderData: map[string]string{KeyCA: ca.PEM, KeyCRL: tt.published}, Now: now,
				Local: Local{Installed: &Installed{Cert: leaf, CAPEM: ca.PEM}, CRLPEM: tt.local},
				Want:  Want{CommonName: "db/1", SANs: []string{"db-1"}, Profile: "peer", RenewAt: 0.66}})
			installs := false
			for _, a := range d.Actions {
				if i, ok := a.(InstallCRL); ok && i.PEM == tt.published {
					installs = true
				}
			}
			if d.State != tt.state || installs != tt.install {
				t.Fatalf("state %s, installs the CRL %v; want %s, %v (actions %#v)", d.State, installs, tt.state, tt.install, d.Actions)
			}
		})
	}
}

// A non-leader reads only the narrow view of leader data that Schema names: it must hold
// every key the unit side of the protocol reads.
func TestNarrowViewHoldsWhatTheUnitSideReads(t *testing.T) {
	want := []string{KeyCA, KeyCASealed, KeyCRL, KeyCAChain, KeyCAChainCRL, SignedCertificateKey("db/1"), RejectionKey("db/1")}
	if got := Schema().NarrowKeys("db/1"); !reflect.DeepEqual(got, want) {
		t.Fatalf("Schema().NarrowKeys = %v, want %v", got, want)
	}
	for _, key := range []string{SignedCertificateKey("db/1"), RejectionKey("db/1")} {
		if unit, ok := Schema().UnitOfLeaderKey(key); !ok || unit != "db/1" {
			t.Errorf("Schema().UnitOfLeaderKey(%q) = %q, %v; want db/1", key, unit, ok)
		}
	}
}

// The bag fields that wake a leader at once are the ones it signs from.
func TestLeaderWakesForTheFieldsItSignsFrom(t *testing.T) {
	for field, wakes := range map[string]bool{KeyCSR: true, KeyProfile: true, KeyState: false, KeySerial: false, KeyTrusts: false, KeyError: false} {
		if Schema().WakesLeader(field) != wakes {
			t.Errorf("Schema().WakesLeader(%q) = %v, want %v", field, !wakes, wakes)
		}
	}
}
