package protocol

import (
	"crypto/x509"
	"slices"
	"sync"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Parsed is a unit's parsed copy of the relation values its decisions read: the
// certificates, CSR or CRL under each key, with what was verified about them (the CA a
// chain verified against, the issuers whose signatures checked). It follows the
// relation key by key: a value is parsed the first time a decision reads it and again
// only when the value under its key changes, so a leader re-deciding for N units parses
// what changed, not the group. Forget drops the keys the relation no longer holds.
//
// It is no state of the group and changes no decision: every read names the value it
// expects, and a key holding another value is parsed afresh, so the same View gives the
// same Decision with a warm Parsed, a cold one or none (TestDecideIsPure). The caller
// owns it (an agent keeps one per unit) and passes it in View.Parsed; nil keeps nothing.
// Safe for concurrent use.
type Parsed struct {
	mu    sync.Mutex
	slots map[slotKey]*slot
}

// NewParsed returns an empty Parsed.
func NewParsed() *Parsed { return &Parsed{slots: map[slotKey]*slot{}} }

// slotKey is where a value lives: a leader-data key, a field of a unit's bag, or one of
// the deciding unit's own values (its leader memory, its installed files).
type slotKey struct {
	place     place
	unit, key string
}

type place byte

const (
	inLeaderData place = iota + 1
	inBag
	own
)

// Own values' keys.
const (
	ownSignerCA     = "signer CA"
	ownReferencedCA = "referenced CA"
	ownBundle       = "bundle being published"
	ownInstalled    = "installed certificate"
	ownTrusted      = "installed CA bundle"
	ownPending      = "pending CSR"
)

// slot is one value and what is known of it. Its fields are read and written under
// Parsed.mu (or belong to one call, for a nil Parsed).
type slot struct {
	value string

	certs     []*x509.Certificate
	certsErr  error
	certsDone bool

	crl     *x509.RevocationList
	crlErr  error
	crlDone bool

	revocations     []Revocation // a RevocationKey's records, decoded
	revocationsDone bool

	issued     []Issued // an IssuedKey's records, decoded
	issuedDone bool

	serials map[string]bool // the serials a CRL lists (hex)

	csr     *x509.CertificateRequest // parsed, and its signature verified
	request *x509.CertificateRequest // parsed only: the unit's own CSR

	// chainCA is the CA bundle the certificates verified against as a chain, valid
	// throughout chainWindow: signatures verify the same way every time, only the
	// time changes.
	chainCA     string
	chainWindow window
	// signedBy holds, by an issuer's DER, whether its key signed the value (the first
	// certificate, or the CRL).
	signedBy map[string]bool
}

// use runs f on the slot for k, emptied first if it held another value than value. A
// nil Parsed gives f a slot of its own, which is forgotten.
func (p *Parsed) use(k slotKey, value string, f func(*slot)) {
	if p == nil {
		f(&slot{value: value})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.slots[k]
	if s == nil || s.value != value {
		s = &slot{value: value}
		p.slots[k] = s
	}
	f(s)
}

// Forget drops what is kept for leader-data keys and bag fields that v no longer holds:
// departed units, withdrawn CSRs, deleted keys.
func (p *Parsed) Forget(v View) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.slots {
		held := true
		switch k.place {
		case inLeaderData:
			_, held = v.LeaderData[k.key]
		case inBag:
			_, held = v.Units[k.unit][k.key]
		}
		if !held {
			delete(p.slots, k)
		}
	}
}

// parseCerts parses the slot's PEM once. The certificates may be shared: read them
// only (the slice is the caller's own).
func (s *slot) parseCerts() ([]*x509.Certificate, error) {
	if !s.certsDone {
		s.certs, s.certsErr = certutil.ParseCertificates([]byte(s.value))
		s.certsDone = true
	}
	return slices.Clone(s.certs), s.certsErr
}

func (s *slot) parseCRL() (*x509.RevocationList, error) {
	if !s.crlDone {
		s.crl, s.crlErr = certutil.ParseCRL([]byte(s.value))
		s.crlDone = true
	}
	return s.crl, s.crlErr
}

// decodeRevocations decodes the slot's revocation records once; the list is shared:
// read it only.
func (s *slot) decodeRevocations() []Revocation {
	if !s.revocationsDone {
		s.revocations, s.revocationsDone = decodeRevocations(s.value), true
	}
	return s.revocations
}

// checkedBy remembers check, the verification of the slot's value by issuer's key.
func (s *slot) checkedBy(issuer *x509.Certificate, check func() error) bool {
	if ok, known := s.signedBy[string(issuer.Raw)]; known {
		return ok
	}
	if s.signedBy == nil || len(s.signedBy) >= 8 { // a slot sees few issuers: CAs of one rotation
		s.signedBy = map[string]bool{}
	}
	ok := check() == nil
	s.signedBy[string(issuer.Raw)] = ok
	return ok
}

// certsAt parses the certificates of value kept at k.
func (p *Parsed) certsAt(k slotKey, value string) (certs []*x509.Certificate, err error) {
	p.use(k, value, func(s *slot) { certs, err = s.parseCerts() })
	return certs, err
}

// leaderCerts parses the certificates in leader data under key.
func (v View) leaderCerts(key string) ([]*x509.Certificate, error) {
	return v.Parsed.certsAt(slotKey{place: inLeaderData, key: key}, v.LeaderData[key])
}

// signerCerts parses the signer's CA bundle (the leader's memory).
func (v View) signerCerts() ([]*x509.Certificate, error) {
	return v.Parsed.certsAt(slotKey{place: own, key: ownSignerCA}, v.Memory.SignerCA)
}

// bundleCerts parses a CA bundle: the published one, or one this decision publishes.
func (v View) bundleCerts(bundlePEM string) ([]*x509.Certificate, error) {
	switch bundlePEM {
	case v.LeaderData[KeyCA]:
		return v.leaderCerts(KeyCA)
	case v.Memory.SignerCA:
		return v.signerCerts()
	}
	return v.Parsed.certsAt(slotKey{place: own, key: ownBundle}, bundlePEM)
}

// unitCertSignedBy: the certificate in leader data for unit parses and issuer signed it.
func (v View) unitCertSignedBy(unit string, issuer *x509.Certificate) (ok bool) {
	key := SignedCertificateKey(unit)
	v.Parsed.use(slotKey{place: inLeaderData, key: key}, v.LeaderData[key], func(s *slot) {
		certs, err := s.parseCerts()
		ok = err == nil && s.checkedBy(issuer, func() error { return certs[0].CheckSignatureFrom(issuer) })
	})
	return ok
}

// csrMemo keeps a unit's verified CSR for policy.Check (policy.Request.Verified).
type csrMemo struct {
	p     *Parsed
	k     slotKey
	value string
}

func (m csrMemo) Remember(parse func() (*x509.CertificateRequest, error)) (csr *x509.CertificateRequest, err error) {
	m.p.use(m.k, m.value, func(s *slot) {
		if s.csr == nil {
			s.csr, err = parse()
		}
		csr = s.csr
	})
	return csr, err
}

// TrustsOf is the package's TrustsOf for the unit's installed CA bundle, parsed once:
// usually it is the group's, parsed already under its leader-data key.
func (p *Parsed) TrustsOf(bundlePEM string) string {
	k := slotKey{place: own, key: ownTrusted}
	if p != nil {
		p.mu.Lock()
		if s := p.slots[slotKey{place: inLeaderData, key: KeyCA}]; s != nil && s.value == bundlePEM {
			k = slotKey{place: inLeaderData, key: KeyCA}
		}
		p.mu.Unlock()
	}
	certs, err := p.certsAt(k, bundlePEM)
	if err != nil {
		return ""
	}
	return fingerprints(certs)
}

// window is when every certificate of a verified chain is valid.
type window struct{ from, to time.Time }

func (w window) holds(now time.Time) bool { return !now.Before(w.from) && !now.After(w.to) }
