// Package protocol is tlsrelay's state protocol: a pure function from one unit's view of
// its peer group to the actions that unit must take. It does no I/O, so every transition
// is a table test; core/agent gathers the view and carries out the actions.
//
// The unit side: make a key and CSR, publish the CSR, install the certificate the leader
// publishes for it once that certificate matches the unit's key and chains to the group
// CA, and start over when renewal is due or the wanted names change. The leader side:
// publish the CA, sign every unit's CSR that has no matching certificate, reject CSRs the
// group's policy refuses, and forget departed units.
package protocol

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
)

// State is what a unit is doing, named as the Juju tls interface named its states so
// that status output reads the same.
type State string

// The unit states.
const (
	StateCreateCSR            State = "create certificate signing request"
	StateAwaitingCertificate  State = "waiting for signed certificate"
	StateCertificateAvailable State = "signed certificate available"
	StateRejected             State = "certificate signing request rejected"
	StateRenewalDue           State = "certificate renewal due"
	// StateSignCSR is the leader's extra state while some unit's CSR awaits its signature.
	StateSignCSR State = "sign certificate signing request"
)

// Digest identifies a CSR in rejections: the hex SHA-256 of its PEM.
func Digest(csrPEM string) string {
	sum := sha256.Sum256([]byte(csrPEM))
	return hex.EncodeToString(sum[:])
}

// View is everything one unit knows when it decides.
type View struct {
	Unit       string                       // this unit
	Leader     bool                         // this unit holds the leadership
	Units      map[string]map[string]string // the bags of every joined unit, this one included
	LeaderData map[string]string
	// Away holds the notes of departed units (NoteBack, NoteGone; the leader's view).
	Away map[string]string
	// Left holds when the store saw departed units leave (relation.Snapshot.Left): a
	// departure counts from then; one not seen counts from Now.
	Left  map[string]time.Time
	Local Local
	Want  Want
	// Policy is what the leader signs; nil is policy.Defaults().
	Policy *policy.Policy
	Now    time.Time
	// Memory is what the leader has learned from its signer (LeaderMemory.Step); the
	// zero value for a unit that does not lead.
	Memory LeaderMemory
	// Parsed is the unit's parsed copy of the values decisions read; nil keeps nothing.
	// It is not part of what is decided on (see Parsed).
	Parsed *Parsed
	// CASeal: this unit holds the ca_seal key, so as leader it seals the CA key into
	// leader data and can import a sealed one.
	CASeal bool
	// Audited: this unit keeps an audit trail, so as leader it acts only once its lead is
	// on it (RecordLead, LeadRecorded).
	Audited bool
	// CA is the leader's terms for the group's CA (rotation).
	CA CATerms
	// CRL is the leader's terms for revoking departed units.
	CRL CRLTerms
}

// Local is the unit's own key material, from its files. Keys themselves are not here:
// the protocol needs only public keys.
type Local struct {
	// Pending is a key and CSR made and published but not yet certified.
	Pending *Pending
	// Installed is the certificate in the unit's files, whose key is in tls.key.
	Installed *Installed
	// CRLPEM is the unit's ca.crl, "" when it has none.
	CRLPEM string
}

// Pending is a CSR awaiting its certificate.
type Pending struct {
	CSRPEM    string
	PublicKey crypto.PublicKey
}

// Installed is the unit's current certificate and the CA bundle written beside it.
type Installed struct {
	Cert     *x509.Certificate
	ChainPEM string // tls.crt: the certificate and the intermediates after it
	CAPEM    string // ca.crt
}

// Want is what the unit's configuration asks for.
type Want struct {
	CommonName string
	SANs       []string // DNS names and IP addresses, as text
	Profile    string
	// RenewAt is the fraction of a certificate's lifetime after which it is renewed,
	// RenewJitter how much earlier at most (see RenewalTime).
	RenewAt, RenewJitter float64
	// Validity is the lifetime asked for (certificate.validity).
	Validity time.Duration
	// Key is the key asked for: a certificate for another kind of key is replaced.
	KeyAlgorithm string
	KeySize      int
	// ReuseKey: renewals keep the installed key (key_rotation never).
	ReuseKey bool
}

// Decision is the outcome for one view: the unit's state, why, and what to do now.
type Decision struct {
	State   State
	Detail  string
	Actions []Action
	// Signing lists the units whose CSRs the leader is signing in this decision.
	Signing []string
	// LeaderProblem says why the leader does not sign (no continuity with the group's CA).
	LeaderProblem string
	// CAState is the leader's word on the group's CA: CASteady, or where a rotation stands.
	CAState string
	// CARotationBlocked says why a rotation that is due cannot proceed (the signer
	// cannot make a new CA); the leader signs on. "" when none is blocked.
	CARotationBlocked string
	// WakeAt is when the decision changes with time alone: the installed certificate's
	// renewal, a refused CSR's retry (RejectionRetry), and for the leader a revocation taking effect or the CRL due; zero when
	// nothing is timed.
	WakeAt time.Time
	// ClockSkew is how far the certificate signed for this unit starts ahead of its
	// clock: this host's clock or the leader's is wrong, and the unit waits until then
	// to install it. Zero when there is none.
	ClockSkew time.Duration
}

// Decide is the protocol. It is pure: the same view always gives the same decision.
func Decide(v View) Decision {
	d := decideSelf(v)
	if inst := v.Local.Installed; inst != nil {
		d.WakeAt = earliestSet(d.WakeAt, RenewalTime(inst.Cert, v.Want))
	}
	if v.Leader {
		leaderActions, signing, plan := decideLeader(v)
		d.Actions = append(d.Actions, leaderActions...)
		d.Signing, d.LeaderProblem, d.CAState, d.CARotationBlocked = signing, plan.problem, plan.state, plan.blocked
		d.WakeAt = earliestSet(d.WakeAt, plan.wake)
	}
	return d
}

// earliestSet is the earlier of two times, a zero time counting as unset.
func earliestSet(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}
