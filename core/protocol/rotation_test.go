package protocol

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// group runs the pure protocol for a few units against an in-test world (bags, leader
// data, each unit's files, the leader's signer), one unit's decision at a time, so a
// rotation can be followed step by step and checked between any two steps.
type group struct {
	t          *testing.T
	units      []string
	leader     string
	bags       map[string]map[string]string
	leaderData map[string]string
	local      map[string]*simUnit
	signer     testCA // the leader's signer
	signerName string
	request    string
	newCAs     int      // NewSignerCA actions carried out
	reasons    []string // of every rotation record written
	records    []string // every rotation record written
	rand       *rand.Rand
	lagging    string
	frozen     map[string]bool // units that decide nothing (a silent or hostile unit)
	later      time.Duration   // how far past now the group's clock is
	trust      time.Duration   // CATerms.TrustTimeout
	// seal: the leader holds the ca_seal key (View.CASeal); the sealed keys it writes
	// name the CA by its fingerprint, and cas holds every CA the signer has held, so
	// that an import finds the CA a sealed key opens to.
	seal         bool
	cas          map[string]testCA
	rotateBefore time.Duration // CATerms.RotateBefore
	cancel       string        // CATerms.Cancel
	terms        SignerTerms   // what the signer claims (LoadSignerCA)
}

type simUnit struct {
	key, pendingKey *ecdsa.PrivateKey
	pendingCSR      string
	cert            *x509.Certificate
	ca              string
	memory          LeaderMemory // what the leader learned (LoadSignerCA)
	parsed          *Parsed      // kept from one decision to the next, as an agent does
}

func newGroup(t *testing.T, seed int64, signer testCA, units ...string) *group {
	g := &group{t: t, rand: rand.New(rand.NewSource(seed)), lagging: units[len(units)-1], units: units, leader: units[0], bags: map[string]map[string]string{},
		leaderData: map[string]string{}, local: map[string]*simUnit{}, signer: signer, signerName: "cfssl", cas: map[string]testCA{}, terms: exportable}
	for _, u := range units {
		g.bags[u] = map[string]string{}
		g.local[u] = &simUnit{parsed: NewParsed()}
	}
	return g
}

func (g *group) view(unit string) View {
	s := g.local[unit]
	local := Local{}
	if s.cert != nil {
		local.Installed = &Installed{Cert: s.cert, CAPEM: s.ca}
	}
	if s.pendingKey != nil {
		local.Pending = &Pending{CSRPEM: s.pendingCSR, PublicKey: s.pendingKey.Public()}
	}
	units := map[string]map[string]string{}
	for u, b := range g.bags {
		units[u] = maps.Clone(b)
	}
	return View{Unit: unit, Leader: unit == g.leader, Units: units, LeaderData: maps.Clone(g.leaderData),
		Local: local, Now: now.Add(g.later), Memory: s.memory, Parsed: s.parsed, CASeal: g.seal,
		CA:   CATerms{Signer: g.signerName, Request: g.request, TrustTimeout: g.trust, RotateBefore: g.rotateBefore, Cancel: g.cancel},
		Want: Want{CommonName: unit, SANs: []string{UnitDNSName(unit)}, Profile: "peer", RenewAt: 0.66, Validity: 30 * 24 * time.Hour}}
}

// step lets one unit decide and act; it reports whether it acted.
func (g *group) step(unit string) (Decision, bool) {
	s := g.local[unit]
	if unit != g.leader {
		s.memory = s.memory.Step(LeadershipLost{})
	}
	g.cas[caseal.Fingerprint(g.signer.Cert.Raw)] = g.signer
	v := g.view(unit)
	d := Decide(v)
	// What the unit keeps parsed never decides: a decision without it is the same.
	cold := v
	cold.Parsed = nil
	if again := Decide(cold); !reflect.DeepEqual(d, again) {
		g.t.Fatalf("%s decided %#v with what it kept parsed and %#v without", unit, d, again)
	}
	s.parsed.Forget(v)
	for _, act := range d.Actions {
		switch act := act.(type) {
		case CreateCSR:
			s.pendingKey = newKey(g.t)
			s.pendingCSR = csrFor(g.t, s.pendingKey, unit, UnitDNSName(unit))
			g.bags[unit][KeyCSR], g.bags[unit][KeyProfile] = s.pendingCSR, "peer"
		case PublishCSR:
			g.bags[unit][KeyCSR], g.bags[unit][KeyProfile] = act.CSRPEM, act.Profile
		case InstallCertificate:
			s.cert, s.ca, s.key, s.pendingKey = mustLeaf(g.t, act.ChainPEM), act.CAPEM, s.pendingKey, nil
		case InstallCA:
			s.ca = act.CAPEM
		case LoadSignerCA:
			s.memory = s.memory.Step(SignerCALoaded{BundlePEM: g.signer.PEM, Signer: g.terms, At: now.Add(g.later)})
		case PublishCA:
			g.leaderData[KeyCA] = act.BundlePEM
		case SetLeaderData:
			maps.Copy(g.leaderData, act.KV)
			maps.DeleteFunc(g.leaderData, func(_, v string) bool { return v == "" })
			if r, ok := DecodeRotation(act.KV[KeyCARotation]); ok {
				g.reasons = append(g.reasons, r.Phase+": "+r.Reason)
				g.records = append(g.records, act.KV[KeyCARotation])
			}
		case NewSignerCA:
			if act.Generate && !g.terms.Generate || !act.Generate && !g.terms.Imports {
				g.t.Fatalf("%s makes a new CA (generate %t) with a signer that claims %+v", unit, act.Generate, g.terms)
			}
			g.signer, s.memory = newCA(g.t, "group CA"), s.memory.Step(SignerCAChanged{})
			g.newCAs++
		case SealCA:
			if !g.terms.Exports {
				g.t.Fatalf("%s seals the CA of a signer that claims %+v", unit, g.terms)
			}
			g.leaderData[KeyCASealed] = caseal.Sealed{Version: 1, CASHA256: caseal.Fingerprint(g.signer.Cert.Raw)}.Encode()
		case ImportSealedCA:
			sealed, ok := caseal.Decode(act.Sealed)
			if !ok || !g.seal || !g.terms.Imports || sealed.CASHA256 != caseal.Fingerprint(mustLeaf(g.t, act.CACertPEM).Raw) {
				g.t.Fatalf("%s imports CA %.60s with sealed key %q", unit, act.CACertPEM, act.Sealed)
			}
			g.signer, s.memory = g.cas[sealed.CASHA256], s.memory.Step(SignerCAChanged{})
		case SignCSR:
			csr, err := certutil.ParseCSR([]byte(act.CSRPEM), act.Unit)
			if err != nil {
				g.t.Fatal(err)
			}
			_, chain := g.signer.sign(g.t, csr.PublicKey, certOpts{cn: act.Unit, dns: []string{UnitDNSName(act.Unit)}})
			g.leaderData[SignedCertificateKey(act.Unit)] = chain
			g.leaderData[IssuedKey(act.Unit)] = act.Earlier
			maps.DeleteFunc(g.leaderData, func(_, v string) bool { return v == "" })
		case WithdrawCSR:
			delete(g.bags[unit], KeyCSR)
		default:
			g.t.Fatalf("%s: unexpected action %T", unit, act)
		}
	}
	// The status every unit publishes: the leader reads serials and trusts from it.
	if s.cert != nil {
		g.bags[unit][KeySerial], g.bags[unit][KeyTrusts] = s.cert.SerialNumber.Text(16), TrustsOf(s.ca)
	}
	return d, len(d.Actions) > 0
}

// settle lets the units decide in a random order, one of them lagging (it skips most
// rounds, as a unit on a slow host or a late watch would), until a round in which every
// unit decided does nothing; after each step it checks that every pair of units would
// still complete a mutual-TLS handshake.
func (g *group) settle() (steps int) {
	for round := 0; round < 500; round++ {
		acted, all := false, true
		for _, i := range g.rand.Perm(len(g.units)) {
			u := g.units[i]
			if g.frozen[u] {
				continue
			}
			if u == g.lagging && g.rand.Intn(4) != 0 {
				all = false
				continue
			}
			if _, did := g.step(u); did {
				acted = true
				steps++
			}
			g.checkHandshakes()
		}
		if all && !acted {
			return steps
		}
	}
	g.t.Fatalf("the group did not settle in 500 rounds; rotation %s", g.leaderData[KeyCARotation])
	return steps
}

// checkHandshakes: each unit's certificate verifies against every peer's installed CA
// bundle, as a TLS peer checks it.
func (g *group) checkHandshakes() {
	g.t.Helper()
	for _, a := range g.units {
		for _, b := range g.units {
			sa, sb := g.local[a], g.local[b]
			if a == b || sa.cert == nil || sb.cert == nil || g.frozen[a] || g.frozen[b] {
				continue
			}
			if err := verifyAgainst(sa.cert, sb.ca); err != nil {
				g.t.Fatalf("%s's certificate (issuer serial %s) fails at %s: %v", a, sa.cert.Issuer.SerialNumber, b, err)
			}
		}
	}
}

// verifyAgainst verifies cert against a CA bundle at now, with x509 alone.
func verifyAgainst(cert *x509.Certificate, bundlePEM string) error {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(bundlePEM)) {
		return errors.New("the CA bundle holds no certificate")
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// allFrom checks that every unit's certificate comes from ca and the bundle is ca alone.
func (g *group) allFrom(ca testCA) {
	g.t.Helper()
	for _, u := range g.units {
		if err := g.local[u].cert.CheckSignatureFrom(ca.Cert); err != nil {
			g.t.Errorf("%s's certificate is not from the new CA: %v", u, err)
		}
		if TrustsOf(g.local[u].ca) != caseal.Fingerprint(ca.Cert.Raw) {
			g.t.Errorf("%s trusts %s, want the new CA alone", u, g.local[u].ca)
		}
	}
	if g.leaderData[KeyCARotation] != "" {
		g.t.Errorf("rotation record left behind: %s", g.leaderData[KeyCARotation])
	}
}

func TestCARotation(t *testing.T) {
	units := []string{"db/0", "db/1", "db/2"}
	tests := []struct {
		name       string
		change     func(g *group) // what starts the rotation
		wantReason string
		wantNewCAs int
	}{
		{name: "tlsrelay ca rotate", change: func(g *group) { g.request = "r1" },
			wantReason: "requested", wantNewCAs: 1},
		{name: "the signer backend changed", change: func(g *group) {
			g.signer, g.signerName, g.local[g.leader].memory.SignerCA = newCA(t, "openssl CA"), "openssl", ""
		}, wantReason: "the signer changed from cfssl to openssl"},
		{name: "a new leader resumes a rotation with its own CA", change: func(g *group) {
			g.request = "r2"
			g.step(g.leader) // NewSignerCA
			g.step(g.leader) // LoadSignerCA
			g.step(g.leader) // the trust phase starts
			if _, ok := DecodeRotation(g.leaderData[KeyCARotation]); !ok {
				t.Fatal("no rotation under way")
			}
			g.leader = "db/1" // db/0 dies; db/1's signer holds a CA of its own
			g.signer = newCA(t, "db/1's CA")
		}, wantReason: "resuming the rotation", wantNewCAs: 1},
	}
	for _, tt := range tests {
		for seed := int64(1); seed <= 8; seed++ {
			t.Run(fmt.Sprintf("%s/seed %d", tt.name, seed), func(t *testing.T) {
				g := newGroup(t, seed, newCA(t, "group CA"), units...)
				g.settle()
				old := g.leaderData[KeyCA]
				tt.change(g)
				g.settle()
				if !strings.Contains(fmt.Sprint(g.reasons), tt.wantReason) {
					t.Errorf("rotation records %q, want one with %q", g.reasons, tt.wantReason)
				}
				if !strings.Contains(fmt.Sprint(g.reasons), PhaseReissue) {
					t.Errorf("rotation records %q: no reissue phase", g.reasons)
				}
				if g.leaderData[KeyCA] == old {
					t.Fatal("the CA bundle did not change")
				}
				g.allFrom(g.signer)
				if g.newCAs != tt.wantNewCAs {
					t.Errorf("%d new CAs made, want %d", g.newCAs, tt.wantNewCAs)
				}
			})
		}
	}
}
