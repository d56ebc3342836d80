package sim

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
)

// Params are a schedule's circumstances, drawn from its seed.
type Params struct {
	Units    int // units in the group; the first Eligible may lead
	Eligible int
	Roles    []Role
	Custody  Custody
	SignsCRL bool
	// FaultRate is how often in 1000 signings the signer spoils its answer (a sloppy
	// or hostile signer); 0 for an honest one.
	FaultRate int

	Validity, CALife, RotateBefore time.Duration
	TrustTimeout, ReissueTimeout   time.Duration
	RevokeAfter                    time.Duration
}

func (p Params) String() string {
	return fmt.Sprintf("units=%d eligible=%d roles=%v custody=%s crl=%t signer_faults=%d/1000", p.Units, p.Eligible, p.Roles, p.Custody, p.SignsCRL, p.FaultRate)
}

// paramsFor draws a schedule's circumstances from its seed.
func paramsFor(seed uint64) Params {
	r := newRand(seed ^ 0x5eed)
	p := Params{Units: 3 + r.intn(4), Custody: []Custody{Exportable, Shared, Remote}[r.intn(3)], SignsCRL: r.intn(10) != 0,
		Validity: 24 * time.Hour, CALife: 30 * 24 * time.Hour, RotateBefore: 10 * 24 * time.Hour,
		TrustTimeout: 10 * time.Minute, ReissueTimeout: time.Hour, RevokeAfter: 15 * time.Minute}
	p.Eligible = 1 + r.intn(min(3, p.Units-1))
	p.Roles = make([]Role, p.Units)
	for i := range p.Roles {
		p.Roles[i] = Honest
		if i >= p.Eligible { // a compromised unit never leads: a leader holds the CA key anyway
			switch r.intn(6) {
			case 0:
				p.Roles[i] = NeverRenews
			case 1:
				p.Roles[i] = Rogue
			}
		}
	}
	if r.intn(5) == 0 {
		p.FaultRate = 100 + r.intn(400)
	}
	return p
}

// world is one schedule's group: the relation, the units, their signers and clock, and
// what really happened, against which the invariants are checked.
type world struct {
	seed      uint64
	p         Params
	now       time.Time
	store     *store
	units     []*unit
	byName    map[string]*unit
	pol       *policy.Policy
	sealKey   []byte
	relation  string
	shared    *caHolder // the CA every signer reaches (shared, remote)
	cas       int
	serials   int
	signings  int
	requests  int
	healing   bool
	ignore    []int // invariants not checked
	unchecked bool  // the leader publishes the signer's answers unchecked
	trace     io.Writer

	truth
}

var start = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// simPolicy is the group's signing policy: a name of its own per unit, an address each
// in 10.0.0.0/24, floating names any unit may hold (one at a time), one shared name.
var simPolicy = func() *policy.Policy {
	r := policy.Defaults()
	r.SANs = []string{"*.svc.internal", "10.0.0.0/24"}
	r.SharedSANs = []string{"shared.internal"}
	r.MaxSANs = 8
	return policy.MustNew(r)
}()

func newWorld(seed uint64, p Params) *world {
	w := &world{seed: seed, p: p, now: start, store: newStore(), byName: map[string]*unit{}, pol: simPolicy,
		sealKey: []byte("0123456789abcdef0123456789abcdef"), relation: "sim", shared: &caHolder{}}
	w.truth = newTruth()
	for i := range p.Units {
		u := &unit{w: w, name: "app/" + strconv.Itoa(i), eligible: i < p.Eligible, role: p.Roles[i], floats: map[string]bool{}}
		u.signer = &signer{w: w, custody: p.Custody, holder: &caHolder{}, signsCRL: p.SignsCRL}
		if p.Custody != Exportable {
			u.signer.holder = w.shared
		}
		w.units = append(w.units, u)
		w.byName[u.name] = u
	}
	return w
}

// signerFault is the fault the signer commits on act, if any, and the names it adds:
// another unit's own name and a floating name.
func (w *world) signerFault(act protocol.SignCSR) (SignerFault, []string) {
	w.signings++
	if w.healing || w.p.FaultRate == 0 || int(splitmix(w.seed^uint64(w.signings)*0x9e37)%1000) >= w.p.FaultRate {
		return FaultNone, nil
	}
	x := splitmix(w.seed ^ uint64(w.signings))
	f := SignerFault(1 + x%uint64(faultCount-1))
	other := w.units[int(x>>16)%len(w.units)]
	names := []string{fmt.Sprintf("n%d.svc.internal", other.index()), floatingNames[int(x>>32)%len(floatingNames)]}
	if other.name == act.Unit {
		names = names[1:]
	}
	return f, names
}

func (w *world) tracef(format string, args ...any) {
	if w.trace != nil {
		fmt.Fprintf(w.trace, "%s +%s  %s\n", w.now.Format("01-02 15:04:05"), "", fmt.Sprintf(format, args...))
	}
}

// keyID names a public key.
func keyID(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return string(der)
}
