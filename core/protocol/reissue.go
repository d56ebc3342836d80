package protocol

import (
	"crypto/x509"
	"slices"
)

// The reissue phase of a CA rotation, and how the leader reads which units present a
// certificate of which CA: what the end of a rotation waits for, and what it revokes
// when its deadline comes first.

// planReissue: the new CA signs; the rotation ends once every unit presents one of its
// certificates, and the old CA leaves the bundle then. At the reissue deadline it ends
// without the units still waited for: their certificates of other CAs are revoked, so
// their names are released and the old CA is needed by nobody.
func planReissue(v View, signerCerts, pub []*x509.Certificate, rot Rotation) caPlan {
	var waiting []string
	for _, unit := range sortedKeys(v.Units) {
		if !presentsCertOf(v, unit, signerCerts[0]) {
			waiting = append(waiting, unit)
		}
	}
	if rot.ReissueSince.IsZero() { // recorded by an earlier version: the phase's clock starts now
		rot.ReissueSince = v.Now
	}
	deadline := rot.ReissueSince.Add(v.CA.reissueTimeout())
	p := caPlan{sign: true}
	if len(waiting) == 0 || !v.Now.Before(deadline) {
		for _, unit := range waiting {
			p.revoke = append(p.revoke, notReissued(v, unit, signerCerts[0])...)
		}
		retired := revokedSerials(p.revoke)
		p.actions = append(p.actions, PublishCA{BundlePEM: joinCerts(signerCerts, inUse(v, missing(pub, signerCerts), retired))}, recordCA(v, nil))
		return p.sealed(v)
	}
	p = p.waitFor(v, joinCerts(signerCerts, missing(pub, signerCerts)), rot, waiting)
	p.wake = deadline
	return p
}

// ReasonNotReissued is the Revocation.Reason of a certificate revoked because its unit
// was not reissued within a rotation's reissue phase.
const ReasonNotReissued = "not reissued by the new CA within ca.rotation_reissue_timeout"

// notReissued revokes what a unit a rotation ends without was issued, but for its
// certificate in leader data if ca issued that (it may not have installed it yet).
func notReissued(v View, unit string, ca *x509.Certificate) []Revocation {
	keep := ""
	if certs, err := v.leaderCerts(SignedCertificateKey(unit)); err == nil && v.unitCertSignedBy(unit, ca) {
		keep = certs[0].SerialNumber.Text(16)
	}
	var out []Revocation
	for _, is := range issuedTo(v, unit) {
		if is.Serial != keep {
			out = append(out, Revocation{Unit: unit, Serial: is.Serial, NotAfter: is.NotAfter, Departed: v.Now, Retired: true, Reason: ReasonNotReissued})
		}
	}
	return out
}

func revokedSerials(list []Revocation) map[string]bool {
	out := make(map[string]bool, len(list))
	for _, r := range list {
		out[r.Serial] = true
	}
	return out
}

// holdsIssued: the serial unit reports is one the group issued to it, and the published
// CRL does not revoke it.
func holdsIssued(v View, unit string) bool {
	serial := v.Units[unit][KeySerial]
	return serial != "" && !v.crlSerials()[serial] && slices.ContainsFunc(issuedTo(v, unit), func(i Issued) bool { return i.Serial == serial })
}

// presentsCertOf: the unit holds no certificate the group issued to it, or the one it
// reports installed is its certificate in leader data and ca issued it.
func presentsCertOf(v View, unit string, ca *x509.Certificate) bool {
	serial := v.Units[unit][KeySerial]
	if !holdsIssued(v, unit) {
		return true
	}
	certs, err := v.leaderCerts(SignedCertificateKey(unit))
	return err == nil && certs[0].SerialNumber.Text(16) == serial && v.unitCertSignedBy(unit, ca)
}

// inUse keeps the CAs that issued some joined unit's certificate and have not expired. A
// unit that reports a serial the group never issued to it needs none: its word is false;
// nor does a certificate revoked (retired, or listed by the published CRL).
func inUse(v View, cas []*x509.Certificate, retired map[string]bool) []*x509.Certificate {
	revoked := v.crlSerials()
	var out []*x509.Certificate
	for _, ca := range cas {
		if !ca.NotAfter.After(v.Now) {
			continue
		}
		for unit := range v.Units {
			if (v.Units[unit][KeySerial] == "" || holdsIssued(v, unit)) && v.unitCertSignedBy(unit, ca) && !v.certRevoked(unit, retired, revoked) {
				out = append(out, ca)
				break
			}
		}
	}
	return out
}

// certRevoked: unit's certificate in leader data is among retired or revoked.
func (v View) certRevoked(unit string, retired, revoked map[string]bool) bool {
	certs, err := v.leaderCerts(SignedCertificateKey(unit))
	if err != nil {
		return false
	}
	serial := certs[0].SerialNumber.Text(16)
	return retired[serial] || revoked[serial]
}
