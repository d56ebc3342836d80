package protocol

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// CA rotation moves a group from one signing CA to another without a failed handshake:
//
//  1. trust: the new CA joins the bundle after the old one; the leader signs nothing,
//     until every unit that holds a certificate the group issued reports (KeyTrusts)
//     that it trusts the new CA, or CATerms.TrustTimeout has passed (the units still
//     missing are named, and renew in the next phase). It signs nothing because the
//     bundle's first CA is the one the group signs with, and a unit holding a
//     certificate of another renews (a unit signed by the new CA now would renew again
//     and again until the phase ends).
//  2. reissue: the new CA leads the bundle and signs; every unit whose certificate the
//     old CA issued renews (unit side: a certificate not issued by the bundle's first CA
//     is due), while the old CA stays in the bundle.
//  3. done: once every unit presents a certificate of the new CA, or
//     CATerms.ReissueTimeout after the reissue phase began, the old CA leaves the bundle
//     and the rotation record is deleted. The units not reissued by the deadline are
//     named and their certificates of other CAs revoked: a rotation made because the
//     old key is suspect ends, whatever any unit does.
//
// A rotation starts when the leader's signer holds another CA than the group's and
// there is a reason: `tlsrelay ca rotate` asked for it, the signer backend changed, the
// group's CA nears its expiry, or a rotation was under way. Without a reason (a new
// leader on another host with its own CA) the leader imports the sealed CA or refuses,
// as before: a second CA is never made in silence.

// CASteady is Decision.CAState when the group signs with the leader's CA and no rotation
// is under way.
const CASteady = "steady"

// The phases of a rotation.
const (
	PhaseTrust   = "trust"   // the new CA is trusted beside the old; only new units are signed
	PhaseReissue = "reissue" // the new CA signs; units renew
)

// Rotation is the value at KeyCARotation.
type Rotation struct {
	Phase  string `json:"phase"`
	From   string `json:"from"` // SHA-256 of the CA being retired
	To     string `json:"to"`   // SHA-256 of the CA taking over
	Reason string `json:"reason"`
	// Waiting names the units the phase waits for.
	Waiting []string `json:"waiting,omitempty"`
	// Since is when the trust phase began (the leader's clock).
	Since time.Time `json:"since,omitzero"`
	// Untrusted names the units the trust phase went on without: they had not said
	// they trust the new CA within CATerms.TrustTimeout.
	Untrusted []string `json:"untrusted,omitempty"`
	// ReissueSince is when the reissue phase began (the leader's clock): it ends
	// CATerms.ReissueTimeout later at the latest.
	ReissueSince time.Time `json:"reissue_since,omitzero"`
	// Cancelled: this rotation takes the group back to the CA an earlier one, cancelled,
	// moved from (see planCancel).
	Cancelled bool `json:"cancelled,omitempty"`
	// CancelRefused says why the leader did not cancel this rotation when asked.
	CancelRefused string `json:"cancel_refused,omitempty"`
}

// Encode returns the rotation as stored in leader data.
func (r Rotation) Encode() string {
	b, _ := json.Marshal(r) // strings and a time: cannot fail
	return string(b)
}

// DecodeRotation reads KeyCARotation; false when absent or unreadable.
func DecodeRotation(s string) (Rotation, bool) {
	var r Rotation
	if s == "" || json.Unmarshal([]byte(s), &r) != nil || r.To == "" {
		return Rotation{}, false
	}
	return r, true
}

// CATerms are the leader's terms for the group's CA, from its configuration and the
// relation's requests.
type CATerms struct {
	// Signer names the signer backend (roles.signer); a change of it rotates the group.
	Signer string
	// Request is a pending `ca rotate` request ("" if none).
	Request string
	// Cancel is a pending `ca rotate --cancel` request ("" if none): the group goes
	// back to the CA it rotates from.
	Cancel string
	// RotateBefore: the group's CA is rotated when less than this is left of it (and
	// less than a third of its life), so no certificate outlives it. 0: never.
	RotateBefore time.Duration
	// TrustTimeout bounds the trust phase (ca.rotation_trust_timeout), ReissueTimeout
	// the reissue phase (ca.rotation_reissue_timeout); 0 is the default of each. No
	// rotation waits for ever: a unit that never answers would hold it.
	TrustTimeout, ReissueTimeout time.Duration
	// RemoteRecheck is how often a remote CA is loaded again (ca.remote_recheck); 0 is
	// RemoteCARecheck.
	RemoteRecheck time.Duration
	// Ref is ca.ref: the group's CA comes from the secrets backend, so the leader
	// imports it into its signer and cannot make a new one. "": the signer's own CA.
	Ref string
	// ChainCRL is what ca.chain_crl_file holds (the CRLs of the CAs above the group's),
	// read by the agent; "" when none is configured.
	ChainCRL string
}

// The default bounds of a rotation's phases (CATerms).
const (
	DefaultTrustTimeout   = 10 * time.Minute
	DefaultReissueTimeout = time.Hour
)

func (t CATerms) trustTimeout() time.Duration {
	if t.TrustTimeout > 0 {
		return t.TrustTimeout
	}
	return DefaultTrustTimeout
}

func (t CATerms) reissueTimeout() time.Duration {
	if t.ReissueTimeout > 0 {
		return t.ReissueTimeout
	}
	return DefaultReissueTimeout
}

// TrustsOf lists the fingerprints of the CAs in a bundle, as units report them.
func TrustsOf(bundlePEM string) string { return (*Parsed)(nil).TrustsOf(bundlePEM) }

func fingerprints(certs []*x509.Certificate) string {
	fps := make([]string, len(certs))
	for i, c := range certs {
		fps[i] = caseal.Fingerprint(c.Raw)
	}
	return strings.Join(fps, ",")
}

// caPlan is the leader's decision about the CA: what to write, and whether to sign.
type caPlan struct {
	actions []Action
	sign    bool
	// revoke are certificates the plan revokes at once: those of units a rotation's
	// reissue phase ended without.
	revoke  []Revocation
	problem string
	state   string    // Decision.CAState
	wake    time.Time // when the plan changes with time alone
	blocked string    // Decision.CARotationBlocked
}

// planCA decides the group's CA bundle and rotation. The signer's CA is loaded. The
// plan functions below get the signer's bundle (signerCerts, its signing CA first) and
// the published one (pub) parsed.
func planCA(v View) caPlan {
	published := v.LeaderData[KeyCA]
	signerCerts, err := v.signerCerts()
	if err != nil {
		return caPlan{problem: "the signer's CA does not parse: " + err.Error()}
	}
	signer := signerCerts[0]
	if published == "" { // the first leader: the group's CA is its signer's
		p := caPlan{actions: []Action{PublishCA{BundlePEM: v.Memory.SignerCA}, recordCA(v, nil)}}
		return p.sealed(v)
	}
	pub, err := v.leaderCerts(KeyCA)
	if err != nil {
		return caPlan{problem: "the published CA bundle does not parse: " + err.Error()}
	}
	group := pub[0]
	rot, rotating := DecodeRotation(v.LeaderData[KeyCARotation])
	target := group
	if rotating {
		if c := byFingerprint(pub, rot.To); c != nil {
			target = c
		}
	}
	if rotating && v.cancelRequested() {
		return planCancel(v, signer, pub, rot)
	}
	if !signer.Equal(target) {
		return planTakeover(v, signerCerts, pub, target, rot, rotating)
	}
	if !rotating {
		return planSteady(v, signerCerts, pub)
	}
	if !signer.Equal(group) {
		return planTrust(v, signerCerts, pub, rot)
	}
	return planReissue(v, signerCerts, pub, rot)
}

// planTakeover: the signer holds another CA than the one the group signs with (or moves
// to). Continue with the group's CA if its sealed copy opens and there is no reason to
// rotate to the signer's CA (a rotation under way goes on to its own target); else rotate
// to the signer's CA if there is a reason; else refuse. A CA that itself nears its expiry
// is no reason: the group's is imported, and a new one made.
func planTakeover(v View, signerCerts, pub []*x509.Certificate, target *x509.Certificate, rot Rotation, rotating bool) caPlan {
	reason := rotationReason(v, pub[0], rot, rotating)
	if reason == "" && v.Memory.Signer.Custody == sdk.CustodyRemote {
		reason = "the signer's remote CA moved to " + short(caseal.Fingerprint(signerCerts[0].Raw))
	}
	worthIt := reason != "" && !expiring(v, signerCerts[0])
	if (rotating || !worthIt) && v.CASeal && v.Memory.Signer.Imports && v.sealedFor(target) {
		return caPlan{actions: []Action{ImportSealedCA{CACertPEM: string(encodeCert(target)), Sealed: v.LeaderData[KeyCASealed]}}}
	}
	if reason == "" {
		return caPlan{problem: continuityProblem(v, string(encodeCert(pub[0])))}
	}
	next := Rotation{Phase: PhaseTrust, From: caseal.Fingerprint(pub[0].Raw), To: caseal.Fingerprint(signerCerts[0].Raw), Reason: reason, Since: v.Now}
	// The group's CAs first (the old one still signs for the units), then the new.
	bundle := joinCerts(pub, missing(signerCerts, pub))
	record := recordCA(v, &next)
	if v.sealedFor(pub[0]) { // kept until the rotation ends, for a cancel
		record.KV[KeyCASealedFrom] = v.LeaderData[KeyCASealed]
	}
	p := caPlan{actions: []Action{PublishCA{BundlePEM: bundle}, record}, state: next.describe()}
	return p.sealed(v)
}

// rotationReason says why the group moves to the signer's CA, or "" if nothing does.
func rotationReason(v View, group *x509.Certificate, rot Rotation, rotating bool) string {
	switch {
	case rotating:
		return "resuming the rotation (" + rot.Reason + ") with this leader's CA"
	case v.requested():
		return "requested (tlsrelay ca rotate)"
	case v.signerChanged():
		return fmt.Sprintf("the signer changed from %s to %s", v.LeaderData[KeyCASigner], v.CA.Signer)
	case expiring(v, group):
		return "the group's CA expires at " + group.NotAfter.UTC().Format(time.RFC3339)
	}
	return ""
}

// signerChanged: the group's CA was made by another signer backend than this leader's.
func (v View) signerChanged() bool {
	return v.LeaderData[KeyCASigner] != "" && v.LeaderData[KeyCASigner] != v.CA.Signer
}

func (v View) requested() bool {
	return v.CA.Request != "" && v.CA.Request != v.LeaderData[KeyCARequest]
}

// expiring: less than RotateBefore is left of the CA, and less than a third of its life
// (so that a short-lived CA is not rotated again as soon as it is made).
func expiring(v View, ca *x509.Certificate) bool {
	left := ca.NotAfter.Sub(v.Now)
	return v.CA.RotateBefore > 0 && left < v.CA.RotateBefore && left < ca.NotAfter.Sub(ca.NotBefore)/3
}

// planSteady: no rotation. Publish the signer's CAs plus any other CA some unit's
// certificate still needs; ask for a new CA when a rotation is due.
func planSteady(v View, signerCerts, pub []*x509.Certificate) caPlan {
	p := caPlan{sign: true, state: CASteady}
	if bundle := joinCerts(signerCerts, inUse(v, missing(pub, signerCerts), nil)); bundle != v.LeaderData[KeyCA] {
		p.actions = append(p.actions, PublishCA{BundlePEM: bundle})
	}
	if v.LeaderData[KeyCASigner] != v.CA.Signer || v.LeaderData[KeyCARotation] != "" {
		p.actions = append(p.actions, recordCA(v, nil))
	}
	// (A changed signer is recorded above: the signer holds the group's CA, nothing to make.)
	if reason := rotationReason(v, signerCerts[0], Rotation{}, false); reason != "" && !v.signerChanged() {
		switch cannot := v.Memory.Signer.cannotRotate(); {
		case v.CA.Ref != "":
			p.problem = "the group's CA should rotate (" + reason + "), but it comes from ca.ref: store a new CA there"
		case cannot != "":
			p.blocked = "the group's CA should rotate (" + reason + "), but " + cannot
		default:
			// Nothing is signed until the next decision has loaded the new CA: the signer
			// would sign with a CA the group has not yet been given.
			old := signerCerts[0]
			p.actions, p.sign = append(p.actions, NewSignerCA{Reason: reason, Generate: !v.Memory.Signer.Imports,
				CommonName: old.Subject.CommonName, Lifetime: old.NotAfter.Sub(old.NotBefore)}), false
		}
	}
	p.actions = append(p.actions, recordBlocked(v, p.blocked)...)
	p = p.sealed(v)
	if len(p.actions) > 0 {
		p.state = "updating"
	}
	return p
}

// planTrust: the new CA is in the bundle; move on once every unit holding a certificate
// the group issued trusts it, or the trust timeout has passed. Until then nothing is
// signed (see the top of this file). What a unit reports counts only where the leader
// can check it: a serial the group never issued to it holds nothing up.
func planTrust(v View, signerCerts, pub []*x509.Certificate, rot Rotation) caPlan {
	want := caseal.Fingerprint(signerCerts[0].Raw)
	var waiting []string
	for _, unit := range sortedKeys(v.Units) {
		bag := v.Units[unit]
		if holdsIssued(v, unit) && !slices.Contains(strings.Split(bag[KeyTrusts], ","), want) {
			waiting = append(waiting, unit)
		}
	}
	if rot.Since.IsZero() { // recorded by a leader that kept no time: the phase starts now
		rot.Since = v.Now
	}
	deadline := rot.Since.Add(v.CA.trustTimeout())
	if len(waiting) > 0 && v.Now.Before(deadline) {
		p := caPlan{}.waitFor(v, joinCerts(pub, missing(signerCerts, pub)), rot, waiting)
		p.wake = deadline
		return p
	}
	rot.Phase, rot.Waiting, rot.Untrusted, rot.ReissueSince = PhaseReissue, nil, waiting, v.Now
	p := caPlan{sign: true, actions: []Action{PublishCA{BundlePEM: joinCerts(signerCerts, missing(pub, signerCerts))}, recordCA(v, &rot)}}
	return p.sealed(v)
}

// waitFor: a phase that waits for units. It keeps bundle published and the record
// (its list of units waited for) current.
func (p caPlan) waitFor(v View, bundle string, rot Rotation, waiting []string) caPlan {
	if bundle != v.LeaderData[KeyCA] {
		p.actions = append(p.actions, PublishCA{BundlePEM: bundle})
	}
	rot.Waiting = waiting
	if encoded := rot.Encode(); encoded != v.LeaderData[KeyCARotation] {
		p.actions = append(p.actions, recordCA(v, &rot))
	}
	p.state = rot.describe()
	return p.sealed(v)
}

// describe says where a rotation stands, for status.
func (r Rotation) describe() string {
	s := fmt.Sprintf("CA rotation, phase %s (%s)", r.Phase, r.Reason)
	if len(r.Waiting) > 0 {
		s += ": waiting for " + strings.Join(r.Waiting, ", ")
	}
	if len(r.Untrusted) > 0 {
		s += "; went on without " + strings.Join(r.Untrusted, ", ") + " (no word of trusting the new CA within ca.rotation_trust_timeout)"
	}
	if r.Phase == PhaseReissue && !r.ReissueSince.IsZero() && len(r.Waiting) > 0 {
		s += "; units not reissued by " + r.ReissueSince.UTC().Format(time.RFC3339) + " + ca.rotation_reissue_timeout are revoked then"
	}
	if r.CancelRefused != "" {
		s += "; not cancelled: " + r.CancelRefused
	}
	return s
}

// recordCA writes the signer's name, the rotation record (nil deletes it, and the
// sealed key of the CA it moved from) and the request acted on.
func recordCA(v View, rot *Rotation) SetLeaderData {
	kv := map[string]string{KeyCASigner: v.CA.Signer, KeyCARotation: ""}
	if rot != nil {
		kv[KeyCARotation] = rot.Encode()
	} else if v.LeaderData[KeyCASealedFrom] != "" {
		kv[KeyCASealedFrom] = ""
	}
	if v.requested() && rot != nil {
		kv[KeyCARequest] = v.CA.Request
		if v.LeaderData[KeyCARotateRefused] != "" {
			kv[KeyCARotateRefused] = ""
		}
	}
	return SetLeaderData{KV: kv}
}

// sealed adds SealCA when the signer's CA key is not the sealed one.
func (p caPlan) sealed(v View) caPlan {
	if signer, err := v.signerCerts(); v.CASeal && v.Memory.Signer.Exports && (err != nil || !v.sealedFor(signer[0])) {
		p.actions = append(p.actions, SealCA{})
	}
	return p
}
