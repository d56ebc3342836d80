package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Role is how a unit behaves.
type Role string

// The roles.
const (
	Honest Role = "honest"
	// NeverRenews installs its first certificate, then makes no CSR again; it reports
	// the serial it was issued and trusts what the group publishes.
	NeverRenews Role = "never-renews"
	// Rogue runs the protocol, and writes what it likes into its bag besides: CSRs for
	// other units' names, another unit's serial, trust it does not have, junk.
	Rogue Role = "rogue"
)

// proc is where a unit's agent process is.
type proc int

const (
	notStarted proc = iota
	running
	paused  // SIGSTOP, or cut off by a partition: alive, doing nothing
	stopped // killed or stopped; its files stay
	gone    // decommissioned: it never comes back
)

// unit is one unit: its agent process, its files and its bag as its member remembers it.
type unit struct {
	w        *world
	name     string
	eligible bool
	role     Role
	proc     proc
	// incarnation counts the unit's process starts: a write in flight from an earlier
	// process teaches the present one nothing.
	incarnation int
	lease       int // the lease of its membership, 0 before it joins
	minRev      int // it never reads an older revision than this (watch, read-your-writes)
	inflight    []op
	remembered  map[string]string // its member's copy of its bag: put back on a rejoin

	// Its files.
	pendingKey *ecdsa.PrivateKey
	pendingCSR string
	certKey    *ecdsa.PrivateKey
	cert       *x509.Certificate
	caPEM      string
	crlPEM     string

	// Its process's memory.
	memory       protocol.LeaderMemory
	parsed       *protocol.Parsed
	published    map[string]string // status fields last written
	lastState    protocol.State
	lastDecision protocol.Decision

	floats map[string]bool // the floating names it wants now
	signer *signer
}

func (u *unit) index() int {
	for i, v := range u.w.units {
		if v == u {
			return i
		}
	}
	return -1
}

// want is what the unit's config asks for.
func (u *unit) want() protocol.Want {
	i := u.index()
	sans := []string{protocol.UnitDNSName(u.name), fmt.Sprintf("n%d.svc.internal", i), fmt.Sprintf("10.0.0.%d", i+1), "shared.internal"}
	for _, f := range floatingNames {
		if u.floats[f] {
			sans = append(sans, f)
		}
	}
	return protocol.Want{CommonName: u.name, SANs: sans, Profile: "peer", RenewAt: 0.66, RenewJitter: 0.1,
		Validity: u.w.p.Validity, KeyAlgorithm: "ecdsa", KeySize: 256}
}

// floatingNames are names any unit may ask for and only one may hold at a time.
var floatingNames = []string{"f0.svc.internal", "f1.svc.internal", "10.0.0.200"}

func (u *unit) local() protocol.Local {
	var l protocol.Local
	if u.pendingCSR != "" {
		l.Pending = &protocol.Pending{CSRPEM: u.pendingCSR, PublicKey: u.pendingKey.Public()}
	}
	if u.cert != nil {
		l.Installed = &protocol.Installed{Cert: u.cert, CAPEM: u.caPEM}
	}
	l.CRLPEM = u.crlPEM
	return l
}

// start starts the unit's agent: a new process remembers nothing but its files.
func (u *unit) start() {
	u.proc, u.incarnation = running, u.incarnation+1
	u.memory, u.parsed, u.published, u.remembered = protocol.LeaderMemory{}, protocol.NewParsed(), nil, map[string]string{}
	u.lease = 0
}

// joined says whether the unit's membership is current.
func (u *unit) joined() bool {
	lease, ok := u.w.store.head().leases[u.name]
	return ok && lease == u.lease && u.lease != 0
}

// step is one turn of the unit's agent (core/agent's step): join if its membership is
// gone, read the relation with lag, decide, carry out the actions. It returns whether
// the unit acted.
func (u *unit) step(lag int, r uint64) bool {
	if u.proc != running || len(u.inflight) > 0 {
		return false
	}
	if !u.joined() {
		u.lease = u.w.store.join(u.name, u.remembered)
		delete(u.w.departedAt, u.name)
		u.minRev = u.w.store.head().rev
	}
	head := u.w.store.head().rev
	rev := max(u.minRev, head-lag)
	u.minRev = rev
	snap := u.w.store.history[rev]
	leader := snap.leader == u.name
	if !leader {
		u.memory = u.memory.Step(protocol.LeadershipLost{})
	}
	view := protocol.View{Unit: u.name, Leader: leader, Units: snap.bags, LeaderData: snap.leaderData, Away: snap.away,
		Local: u.local(), Want: u.want(), Policy: u.w.pol, Now: u.w.now, Memory: u.memory, Parsed: u.parsed,
		CASeal: u.w.p.Custody == Exportable,
		CA: protocol.CATerms{Signer: "sim", Request: snap.requests[protocol.RequestRotateCA], Cancel: snap.requests[protocol.RequestCancelRotation],
			RotateBefore: u.w.p.RotateBefore, TrustTimeout: u.w.p.TrustTimeout, ReissueTimeout: u.w.p.ReissueTimeout,
			RemoteRecheck: remoteRecheck},
		CRL: protocol.CRLTerms{RevokeAfter: u.w.p.RevokeAfter}}
	d := protocol.Decide(view)
	u.parsed.Forget(view)
	u.lastDecision = d
	if u.w.trace != nil {
		u.w.tracef("     %s rev=%d/%d leader=%t %q %s: %s", u.name, rev, head, leader, d.State, d.Detail, describeActions(d.Actions))
		if leader {
			u.w.tracef("       CA %s  rotation %s", bundleFPs(snap.leaderData[protocol.KeyCA]), snap.leaderData[protocol.KeyCARotation])
		}
	}
	if leader {
		u.w.leaderDecided(u, snap, d)
	}
	actions := d.Actions
	if u.role == NeverRenews && u.cert != nil { // it installs and reports, and asks for nothing
		actions = slices.DeleteFunc(slices.Clone(actions), func(a protocol.Action) bool {
			_, renew := a.(protocol.CreateCSR)
			return renew
		})
	}
	x := &executor{u: u, leader: leader, term: snap.term, kv: map[string]string{}}
	x.apply(actions)
	acted := len(actions) > 0
	if !acted || leader {
		u.publishStatus(d)
	}
	if u.role == Rogue && !u.w.healing { // what it wrote stays; it writes no more once the faults end
		u.misbehave(snap, r)
	}
	return acted
}

// remoteRecheck is how often a leader loads a remote CA again: longer than the
// default, so that a healed group of three hours is not a thousand rechecks.
const remoteRecheck = 15 * time.Minute

// publishStatus writes the status fields the leader reads (serial, trusted CAs) when
// they changed, as the agent does once it settles.
func (u *unit) publishStatus(d protocol.Decision) {
	fields := map[string]string{protocol.KeyState: string(d.State), protocol.KeySerial: "", protocol.KeyTrusts: ""}
	if u.cert != nil {
		fields[protocol.KeySerial] = u.cert.SerialNumber.Text(16)
		fields[protocol.KeyTrusts] = u.parsed.TrustsOf(u.caPEM)
	}
	changed := map[string]string{}
	for k, v := range fields {
		if u.published == nil || u.published[k] != v {
			changed[k] = v
		}
	}
	if len(changed) > 0 {
		u.setBag(changed)
		u.published = fields // as if it landed; a lost write is put back by a rejoin
	}
}

// setBag queues a write of the unit's bag; its member remembers it either way.
func (u *unit) setBag(kv map[string]string) {
	for k, v := range kv {
		if v == "" {
			delete(u.remembered, k)
		} else {
			u.remembered[k] = v
		}
	}
	u.inflight = append(u.inflight, op{lease: u.lease, incarnation: u.incarnation, kv: kv})
}

// deliver lands the unit's writes in flight, or fails them all (fail).
func (u *unit) deliver(fail bool) {
	ops := u.inflight
	u.inflight = nil
	for _, o := range ops {
		if fail {
			if !o.doomed {
				u.w.lost(u, o, "dropped")
			}
			continue
		}
		rev, dropped, ok := u.w.store.apply(u.name, o)
		if !ok {
			if !o.doomed {
				u.w.lost(u, o, "fenced")
			}
			continue
		}
		u.minRev = max(u.minRev, rev)
		if o.leader {
			u.w.landed(u, o, dropped)
		}
	}
}

// createCSR makes a new key and CSR for what the unit wants, and publishes it.
// createCSR makes the CSR act asks for, with a key of the simulation's pool (its
// spec is the same for every unit) or the installed key.
func (u *unit) createCSR(act protocol.CreateCSR) {
	key := u.w.newKey()
	if act.ReuseKey && u.certKey != nil {
		key = u.certKey
	}
	csr, err := certutil.NewCSRForKey(act.Request, key)
	if err != nil {
		panic(err)
	}
	u.pendingKey, u.pendingCSR = key, string(csr.CSRPEM)
	u.w.madeKey(u, key.Public(), protocol.Want{CommonName: act.Request.CommonName, SANs: act.Request.SANs, Profile: act.Profile})
	u.setBag(map[string]string{protocol.KeyCSR: u.pendingCSR, protocol.KeyProfile: act.Profile})
}

// misbehave is a rogue unit's own writes after its turn, picked by r: a CSR for names
// others hold or may hold, another unit's serial, trust it does not have, junk.
func (u *unit) misbehave(snap *state, r uint64) {
	w := u.w
	switch r % 7 {
	case 0: // a CSR for another unit's names, with its own name as common name
		other := w.units[int(r>>8)%len(w.units)]
		i := other.index()
		sans := []string{protocol.UnitDNSName(u.name), fmt.Sprintf("n%d.svc.internal", i), fmt.Sprintf("10.0.0.%d", i+1)}
		u.rogueCSR(sans, r)
	case 1: // a CSR for every floating name
		u.rogueCSR(append([]string{protocol.UnitDNSName(u.name)}, floatingNames...), r)
	case 2: // another unit's serial, or one nobody issued
		serial := fmt.Sprintf("%x", splitmix(r))
		if other := w.units[int(r>>8)%len(w.units)]; other.cert != nil {
			serial = other.cert.SerialNumber.Text(16)
		}
		u.setBag(map[string]string{protocol.KeySerial: serial})
	case 3: // trust in whatever the group publishes, without installing it
		u.setBag(map[string]string{protocol.KeyTrusts: protocol.TrustsOf(snap.leaderData[protocol.KeyCA])})
	case 4: // junk
		u.setBag(map[string]string{protocol.KeyCSR: fmt.Sprintf("junk %x", r), protocol.KeyProfile: "admin"})
	case 5: // its own CSR again, for the other profile
		if u.pendingCSR != "" {
			u.setBag(map[string]string{protocol.KeyCSR: u.pendingCSR, protocol.KeyProfile: "server"})
		}
	case 6: // a CSR with another unit's common name
		other := w.units[int(r>>8)%len(w.units)]
		key := w.newKey()
		csr, err := certutil.NewCSRForKey(sdk.CSRRequest{CommonName: other.name, SANs: []string{protocol.UnitDNSName(other.name)}}, key)
		if err == nil {
			w.madeKey(u, key.Public(), protocol.Want{CommonName: other.name, SANs: []string{protocol.UnitDNSName(other.name)}, Profile: "peer"})
			u.setBag(map[string]string{protocol.KeyCSR: string(csr.CSRPEM), protocol.KeyProfile: "peer"})
		}
	}
}

func (u *unit) rogueCSR(sans []string, r uint64) {
	key := u.w.newKey()
	slices.Sort(sans)
	csr, err := certutil.NewCSRForKey(sdk.CSRRequest{CommonName: u.name, SANs: slices.Compact(sans)}, key)
	if err != nil {
		return
	}
	u.w.madeKey(u, key.Public(), protocol.Want{CommonName: u.name, SANs: sans, Profile: "peer"})
	// A rogue that keeps the key can install what it is given: it takes the place of
	// its pending CSR.
	if r&(1<<20) != 0 {
		u.pendingKey, u.pendingCSR = key, string(csr.CSRPEM)
	}
	u.setBag(map[string]string{protocol.KeyCSR: string(csr.CSRPEM), protocol.KeyProfile: "peer"})
}

func bundleFPs(bundle string) string {
	certs, _ := certutil.ParseCertificates([]byte(bundle))
	var fps []string
	for _, c := range certs {
		fps = append(fps, caseal.Fingerprint(c.Raw)[:12])
	}
	return strings.Join(fps, ",")
}

// describeActions names actions for a trace.
func describeActions(actions []protocol.Action) string {
	var parts []string
	for _, a := range actions {
		switch a := a.(type) {
		case protocol.SignCSR:
			parts = append(parts, "sign "+a.Unit)
		case protocol.RejectCSR:
			parts = append(parts, fmt.Sprintf("reject %s (%s)", a.Unit, a.Rejection.Reason))
		case protocol.CreateCSR:
			parts = append(parts, "create CSR ("+a.Reason+")")
		case protocol.SetLeaderData:
			parts = append(parts, fmt.Sprintf("set %v", slices.Sorted(maps.Keys(a.KV))))
		case protocol.ForgetUnit:
			parts = append(parts, "forget "+a.Unit)
		default:
			parts = append(parts, strings.TrimPrefix(fmt.Sprintf("%T", a), "protocol."))
		}
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

var _ crypto.PublicKey = (*ecdsa.PublicKey)(nil)
