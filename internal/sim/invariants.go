package sim

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// The invariants (docs/SECURITY.md), checked after every event of a schedule; 2, 3 and
// 5 also once the group has healed.
const (
	OneHolder     = 1 // no two valid, unrevoked certificates of different units carry one held name
	Revoked       = 2 // what a unit away past the delay holds is in the CRL; the CRL lists only what was published
	RotationEnds  = 3 // every CA rotation ends within its deadlines, whatever any unit does
	OneLineage    = 4 // one CA lineage; every certificate is for its CSR's key and names, as asked
	HonestSigned  = 5 // an honest unit holds a current certificate once the group heals
	BoundedWaste  = 6 // a CSR is signed again only after a failure lost its certificate
	Settles       = 7 // the healed group stops acting (no livelock)
	invariantLast = Settles
)

var invariantNames = map[int]string{OneHolder: "one holder per name", Revoked: "revocation", RotationEnds: "rotations end",
	OneLineage: "one lineage, certificates as asked", HonestSigned: "honest units signed", BoundedWaste: "signatures bounded by failures",
	Settles: "the group settles"}

// Violation is an invariant that did not hold.
type Violation struct {
	Invariant int
	Message   string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("invariant %d (%s): %s", v.Invariant, invariantNames[v.Invariant], v.Message)
}

// certRecord is a certificate a signer issued, and what became of it.
type certRecord struct {
	unit      string
	serial    string
	cert      *x509.Certificate
	digest    string
	profile   string // the profile the leader signed it for
	fault     SignerFault
	published bool
	names     []string // the names it holds exclusively (policy.Exclusive)
}

// keyRecord is a key a unit made, and the CSR it made with it.
type keyRecord struct {
	unit string
	want protocol.Want
}

// truth is what really happened in a schedule.
type truth struct {
	certs      map[string]*certRecord // by serial
	lastSigned map[string]*certRecord // by CSR digest
	keys       map[string]keyRecord   // by keyID
	signs      map[string]int         // CSR digest -> certificates signed for it
	failures   map[string]int         // CSR digest -> failures that lost its certificate
	lineage    map[string]bool        // the CAs the group moved to, by fingerprint
	departedAt map[string]time.Time   // units away now, since when
	crlPEM     string                 // the CRL revoked was read from
	revoked    map[string]bool
	violation  *Violation
}

func newTruth() truth {
	return truth{certs: map[string]*certRecord{}, lastSigned: map[string]*certRecord{}, keys: map[string]keyRecord{}, signs: map[string]int{}, failures: map[string]int{},
		lineage: map[string]bool{}, departedAt: map[string]time.Time{}, revoked: map[string]bool{}}
}

func (w *world) fail(invariant int, format string, args ...any) {
	if w.violation == nil && !slices.Contains(w.ignore, invariant) {
		w.violation = &Violation{Invariant: invariant, Message: fmt.Sprintf(format, args...)}
	}
}

func (w *world) madeKey(u *unit, pub any, want protocol.Want) {
	w.keys[keyID(pub)] = keyRecord{unit: u.name, want: want}
}

// signedBy records a certificate a leader's signer returned.
func (w *world) signedBy(_ *unit, act protocol.SignCSR, chain string, fault SignerFault) {
	certs, err := certutil.ParseCertificates([]byte(chain))
	if err != nil {
		w.fail(OneLineage, "the signer returned no certificate for %s: %v", act.Unit, err)
		return
	}
	leaf := certs[0]
	rec := &certRecord{unit: act.Unit, serial: leaf.SerialNumber.Text(16), cert: leaf, digest: protocol.Digest(act.CSRPEM), profile: act.Profile, fault: fault}
	for _, d := range leaf.DNSNames {
		if n := policy.Normalize(d); w.pol.Exclusive(act.Unit, n) {
			rec.names = append(rec.names, n)
		}
	}
	for _, ip := range leaf.IPAddresses {
		if n := ip.String(); w.pol.Exclusive(act.Unit, n) {
			rec.names = append(rec.names, n)
		}
	}
	// A CSR signed again is waste unless the certificate signed for it before can no
	// longer serve: it has expired, its CA has left the group's bundle, or leader data
	// holds another certificate for the unit (it asked for another CSR meanwhile, and
	// came back to this one: only a rogue does).
	if prev := w.lastSigned[rec.digest]; prev != nil && (!w.serves(prev, act.CA) || !w.inLeaderData(prev)) {
		w.failures[rec.digest]++
	}
	w.certs[rec.serial] = rec
	w.lastSigned[rec.digest] = rec
	w.signs[rec.digest]++
}

// inLeaderData: rec is the certificate leader data holds for its unit.
func (w *world) inLeaderData(rec *certRecord) bool {
	certs, err := certutil.ParseCertificates([]byte(w.store.head().leaderData[protocol.SignedCertificateKey(rec.unit)]))
	return err == nil && certs[0].SerialNumber.Text(16) == rec.serial
}

// serves: rec has not expired and a CA of the bundle the leader publishes issued it.
func (w *world) serves(rec *certRecord, bundlePEM string) bool {
	if !w.now.Before(rec.cert.NotAfter) {
		return false
	}
	bundle, err := certutil.ParseCertificates([]byte(bundlePEM))
	if err != nil {
		return false
	}
	return slices.ContainsFunc(bundle, func(ca *x509.Certificate) bool { return rec.cert.CheckSignatureFrom(ca) == nil })
}

// landed records what a leader write that landed published, and the answers its guards
// dropped (the unit asked for another CSR meanwhile).
func (w *world) landed(u *unit, o op, dropped []string) {
	for key, digest := range o.signed {
		if slices.Contains(dropped, key) {
			w.failures[digest]++
			continue
		}
		certs, err := certutil.ParseCertificates([]byte(o.kv[key]))
		if err != nil {
			continue
		}
		if rec := w.certs[certs[0].SerialNumber.Text(16)]; rec != nil && !rec.published {
			rec.published = true
			w.checkPublished(rec)
		}
	}
	if rot, ok := protocol.DecodeRotation(o.kv[protocol.KeyCARotation]); ok && w.lineage[rot.From] {
		w.lineage[rot.To] = true
	}
	if bundle, ok := o.kv[protocol.KeyCA]; ok {
		certs, err := certutil.ParseCertificates([]byte(bundle))
		if err != nil {
			w.fail(OneLineage, "%s published a CA bundle that does not parse: %v", u.name, err)
			return
		}
		fp := caseal.Fingerprint(certs[0].Raw)
		switch {
		case len(w.lineage) == 0:
			w.lineage[fp] = true
		case !w.lineage[fp]:
			w.fail(OneLineage, "%s published CA %s first in the bundle, which no rotation of the group moved to", u.name, fp[:16])
		}
	}
	if u.incarnation == o.incarnation {
		for _, d := range o.answered {
			u.memory = u.memory.Step(protocol.CSRAnswered{Digest: d})
		}
	}
}

// lost records a write that did not land: a certificate in it may be signed again.
func (w *world) lost(_ *unit, o op, _ string) {
	for _, digest := range o.signed {
		w.failures[digest]++
	}
}

func (w *world) installed(u *unit, cert *x509.Certificate) {
	rec := w.certs[cert.SerialNumber.Text(16)]
	if rec == nil || !rec.published || rec.unit != u.name {
		w.fail(OneLineage, "%s installed serial %s, which no leader published for it", u.name, cert.SerialNumber.Text(16))
	}
}

func (w *world) rejected(*unit, protocol.RejectCSR) {}

// checkPublished: a published certificate is for a key its unit made, with exactly the
// names and profile of that key's CSR, no CA, for the validity asked, by a CA of the
// group (invariant 4).
func (w *world) checkPublished(rec *certRecord) {
	leaf := rec.cert
	k, ok := w.keys[keyID(leaf.PublicKey)]
	switch {
	case !ok || k.unit != rec.unit:
		w.fail(OneLineage, "serial %s published for %s certifies a key %s did not make", rec.serial, rec.unit, rec.unit)
		return
	case leaf.Subject.CommonName != k.want.CommonName || len(leaf.Subject.Names) != 1:
		w.fail(OneLineage, "serial %s published for %s has subject %q, want CN=%s alone", rec.serial, rec.unit, leaf.Subject, k.want.CommonName)
	case leaf.IsCA:
		w.fail(OneLineage, "serial %s published for %s is a CA certificate", rec.serial, rec.unit)
	case leaf.NotAfter.Sub(leaf.NotBefore) > w.p.Validity+certutil.Backdate+time.Minute:
		w.fail(OneLineage, "serial %s published for %s lives %s, more than the %s asked", rec.serial, rec.unit, leaf.NotAfter.Sub(leaf.NotBefore), w.p.Validity)
	}
	have := certSANs(leaf)
	want := slices.Clone(k.want.SANs)
	slices.Sort(want)
	if want = slices.Compact(want); !slices.Equal(have, want) {
		w.fail(OneLineage, "serial %s published for %s names %v, its CSR asked for %v", rec.serial, rec.unit, have, want)
	}
	usages, _ := certutil.UsagesFor(sdk.Profile(rec.profile), leaf.PublicKey)
	if !slices.Equal(slices.Sorted(slices.Values(leaf.ExtKeyUsage)), slices.Sorted(slices.Values(usages.Extended))) {
		w.fail(OneLineage, "serial %s published for %s has extended usages %v, profile %s has %v", rec.serial, rec.unit, leaf.ExtKeyUsage, rec.profile, usages.Extended)
	}
}

func certSANs(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// check runs the invariants that hold after every event.
func (w *world) check() {
	if w.violation != nil {
		return
	}
	w.readCRL()
	// 1: one holder per name.
	holder := map[string]*certRecord{}
	for _, serial := range w.sortedSerials() {
		rec := w.certs[serial]
		if !rec.published || !w.now.Before(rec.cert.NotAfter) || w.revoked[serial] {
			continue
		}
		for _, n := range rec.names {
			if h := holder[n]; h != nil && h.unit != rec.unit {
				w.fail(OneHolder, "%s is held by %s (serial %s) and by %s (serial %s), both valid and unrevoked", n, h.unit, h.serial, rec.unit, rec.serial)
				return
			}
			holder[n] = rec
		}
	}
	// 2 (part): the CRL lists only certificates the group published.
	for serial := range w.revoked {
		if rec := w.certs[serial]; rec == nil || !rec.published {
			w.fail(Revoked, "the CRL lists serial %s, which no leader published", serial)
			return
		}
	}
	// 6: a CSR is signed again only after a failure lost its certificate.
	for digest, n := range w.signs {
		if n > 1+w.failures[digest] {
			w.fail(BoundedWaste, "CSR %s was signed %d times after %d failures", digest[:12], n, w.failures[digest])
			return
		}
	}
}

// readCRL keeps the serials the group's CRL lists.
func (w *world) readCRL() {
	crlPEM := w.store.head().leaderData[protocol.KeyCRL]
	if crlPEM == w.crlPEM {
		return
	}
	w.crlPEM, w.revoked = crlPEM, map[string]bool{}
	if crlPEM == "" {
		return
	}
	crl, err := certutil.ParseCRL([]byte(crlPEM))
	if err != nil {
		w.fail(Revoked, "the group's CRL does not parse: %v", err)
		return
	}
	for _, s := range certutil.Revoked(crl) {
		w.revoked[s.Text(16)] = true
	}
}

func (w *world) sortedSerials() []string {
	out := make([]string, 0, len(w.certs))
	for s := range w.certs {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// leaderDecided checks what a decision of a leader whose lease holds says of the
// rotation under way: a leader with nothing left to do has moved past every phase whose
// deadline has passed (invariant 3). The deadlines are the record's own: a leader that
// was given no turn (the schedule starved it) is judged when it next decides.
func (w *world) leaderDecided(u *unit, snap *state, d protocol.Decision) {
	h := w.store.head()
	if h.leader != u.name || len(d.Actions) > 0 || snap.rev != h.rev {
		return
	}
	if rot, ok := protocol.DecodeRotation(h.leaderData[protocol.KeyCARotation]); ok {
		if late := w.pastDeadline(rot); late != "" {
			w.fail(RotationEnds, "the leader has nothing to do, but %s", late)
		}
	}
}

// pastDeadline says how rot is past a deadline of its phase, or "".
func (w *world) pastDeadline(rot protocol.Rotation) string {
	var deadline time.Time
	switch {
	case rot.Phase == protocol.PhaseTrust && !rot.Since.IsZero():
		deadline = rot.Since.Add(w.p.TrustTimeout)
	case rot.Phase == protocol.PhaseReissue && !rot.ReissueSince.IsZero():
		deadline = rot.ReissueSince.Add(w.p.ReissueTimeout)
	case rot.Phase == protocol.PhaseReissue:
		deadline = rot.Since.Add(w.rotationBound()) // a record without the phase's start
	default:
		return ""
	}
	if w.now.Before(deadline) {
		return ""
	}
	return fmt.Sprintf("the rotation %s -> %s (%s) is still in phase %s, waiting for %v, %s past the phase's deadline %s",
		short(rot.From), short(rot.To), rot.Reason, rot.Phase, rot.Waiting, w.now.Sub(deadline), deadline.Format(time.RFC3339))
}

// rotationBound is how long a rotation may take: its trust phase, its reissue phase, and
// a margin for the leader's decisions.
func (w *world) rotationBound() time.Duration {
	return w.p.TrustTimeout + w.p.ReissueTimeout + 10*time.Minute
}

func short(fp string) string { return fp[:min(12, len(fp))] }
