package protocol

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// decideSelf is the unit side of the protocol, the same for leader and followers: the
// group's CRL, then its certificate. The CRL first: a service told of a new certificate
// (on_change) then finds the CRL published with it already in place.
func decideSelf(v View) Decision {
	d := decideCertificate(v)
	if crl := v.LeaderData[KeyCRL]; crl != "" {
		// The CRLs of the CAs above an intermediate group CA follow the group's.
		if crl += v.LeaderData[KeyCAChainCRL]; crl != v.Local.CRLPEM {
			d.Actions = append([]Action{InstallCRL{PEM: crl}}, d.Actions...)
		}
	}
	return d
}

func decideCertificate(v View) Decision {
	ca := v.LeaderData[KeyCA]
	if p := v.Local.Pending; p != nil {
		return decidePending(v, p, ca)
	}
	inst := v.Local.Installed
	if inst == nil {
		return Decision{State: StateCreateCSR, Detail: "no certificate yet",
			Actions: []Action{v.createCSR("no certificate yet", false)}}
	}
	if due, reason := renewalDue(v, inst, ca); due != "" {
		reuse := v.Want.ReuseKey && keyMatches(inst.Cert, v.Want)
		d := Decision{State: due, Detail: reason, Actions: []Action{v.createCSR(reason, reuse)}}
		if act := v.installCA(ca); act != nil {
			// Trust the group's bundle now, not when the new certificate comes: peers
			// of a CA rotation present the new CA's certificates meanwhile.
			d.Actions = append([]Action{act}, d.Actions...)
		}
		return d
	}
	d := Decision{State: StateCertificateAvailable, Detail: "expires " + inst.Cert.NotAfter.UTC().Format(time.RFC3339)}
	if act := v.installCA(ca); act != nil {
		d.Actions = append(d.Actions, act)
	}
	if act := v.installChain(inst); act != nil {
		d.Actions = append(d.Actions, act)
	}
	if v.Units[v.Unit][KeyCSR] != "" {
		d.Actions = append(d.Actions, WithdrawCSR{})
	}
	return d
}

// createCSR asks for a CSR of what the unit wants, for reason.
func (v View) createCSR(reason string, reuseKey bool) CreateCSR {
	w := v.Want
	return CreateCSR{Reason: reason, ReuseKey: reuseKey, Profile: w.Profile,
		Request: sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: w.KeyAlgorithm, Size: w.KeySize}, CommonName: w.CommonName, SANs: slices.Clone(w.SANs)}}
}

// decidePending handles a unit that has published a CSR and waits for its certificate.
func decidePending(v View, p *Pending, ca string) Decision {
	if chain := v.LeaderData[SignedCertificateKey(v.Unit)]; chain != "" && ca != "" {
		// A certificate for another key (the one before a lost key, a stale one) is
		// never accepted: it would pair our key with someone else's certificate.
		if cert, err := v.signedLeaf(v.Unit, p.PublicKey, ca); err == nil && cert != nil {
			return Decision{State: StateCertificateAvailable, Detail: "installing serial " + cert.SerialNumber.Text(16),
				Actions: []Action{InstallCertificate{ChainPEM: v.unitChain(chain), CAPEM: v.caFile()}}}
		}
		if starts := v.startsLater(p); !starts.IsZero() {
			d := decideAwaiting(v, p, ca)
			d.ClockSkew, d.WakeAt = starts.Sub(v.Now), starts
			d.Detail = fmt.Sprintf("the certificate signed for it is valid from %s", starts.UTC().Format(time.RFC3339))
			return d
		}
	}
	if differs := v.pendingDiffers(p); differs != "" {
		reason := "the pending CSR no longer matches the config: " + differs
		return Decision{State: StateCreateCSR, Detail: reason, Actions: []Action{v.createCSR(reason, false)}}
	}
	if r, ok := DecodeRejection(v.LeaderData[RejectionKey(v.Unit)]); ok && r.CSRDigest == Digest(p.CSRPEM) {
		retry := r.At.Add(RejectionRetry)
		switch {
		case r.Profile != "" && v.Want.Profile != "" && r.Profile != v.Want.Profile:
			reason := fmt.Sprintf("the CSR was refused for profile %s; the config asks for %s", r.Profile, v.Want.Profile)
			return Decision{State: StateCreateCSR, Detail: reason, Actions: []Action{v.createCSR(reason, false)}}
		case !r.At.IsZero() && !v.Now.Before(retry):
			reason := fmt.Sprintf("the CSR was refused %s ago (%s): trying a new one", RejectionRetry, r.Reason)
			return Decision{State: StateCreateCSR, Detail: reason, Actions: []Action{v.createCSR(reason, false)}}
		}
		d := Decision{State: StateRejected, Detail: r.Reason}
		if !r.At.IsZero() {
			d.WakeAt = retry
		}
		if act := v.installCA(ca); act != nil {
			// Refused or not, a unit trusts the group's bundle: a CA rotation waits for it.
			d.Actions = append(d.Actions, act)
		}
		return d
	}
	return decideAwaiting(v, p, ca)
}

// decideAwaiting: the unit's CSR is sent, or must be sent again, and it waits.
func decideAwaiting(v View, p *Pending, ca string) Decision {
	d := Decision{State: StateAwaitingCertificate, Detail: "CSR published"}
	bag := v.Units[v.Unit]
	if bag[KeyCSR] != p.CSRPEM || bag[KeyProfile] != v.Want.Profile {
		// Our bag lost the CSR (a restart, a relation reset) or never had it: re-send.
		d.Detail = "publishing CSR"
		d.Actions = []Action{PublishCSR{CSRPEM: p.CSRPEM, Profile: v.Want.Profile}}
	}
	if act := v.installCA(ca); act != nil {
		// A unit renewing as a CA rotation starts must still trust the new CA: the
		// leader signs nothing, this CSR included, until every unit holding a
		// certificate does.
		d.Actions = append(d.Actions, act)
	}
	return d
}

// startsLater returns when the certificate signed for the unit's pending key in leader
// data becomes valid, if that is after now; zero otherwise.
func (v View) startsLater(p *Pending) time.Time {
	certs, err := v.leaderCerts(SignedCertificateKey(v.Unit))
	if err != nil || !certutil.SamePublicKey(certs[0].PublicKey, p.PublicKey) || !certs[0].NotBefore.After(v.Now) {
		return time.Time{}
	}
	return certs[0].NotBefore
}

// pendingDiffers says how the pending CSR differs from what the unit wants (common
// name, SANs, key), or "" when it does not or cannot be read (the leader says so then).
func (v View) pendingDiffers(p *Pending) string {
	var csr *x509.CertificateRequest
	v.Parsed.use(slotKey{place: own, key: ownPending}, p.CSRPEM, func(s *slot) {
		if s.request == nil {
			s.request, _ = parseOwnCSR(p.CSRPEM)
		}
		csr = s.request
	})
	if csr == nil {
		return ""
	}
	if want := v.Want.CommonName; want != "" && csr.Subject.CommonName != want {
		return fmt.Sprintf("common name %q, not %q", csr.Subject.CommonName, want)
	}
	have := slices.Clone(csr.DNSNames)
	for _, ip := range csr.IPAddresses {
		have = append(have, ip.String())
	}
	slices.Sort(have)
	if have, want := slices.Compact(have), normalSANs(v.Want.SANs); !slices.Equal(have, want) {
		return fmt.Sprintf("SANs %v, not %v", have, want)
	}
	if !keySpecMatches(csr.PublicKey, v.Want) {
		k := certutil.KeySpecOf(csr.PublicKey)
		return fmt.Sprintf("key %s %d, not %s %d", k.Algorithm, k.Size, v.Want.KeyAlgorithm, v.Want.KeySize)
	}
	return ""
}

// parseOwnCSR parses the unit's own CSR without checking its signature (the unit made
// it; the leader checks).
func parseOwnCSR(csrPEM string) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil {
		return nil, errors.New("CSR is not PEM")
	}
	return x509.ParseCertificateRequest(block.Bytes)
}

// renewalDue says whether the installed certificate must be replaced, as a state and a
// reason; an empty state means it is fine.
func renewalDue(v View, inst *Installed, ca string) (State, string) {
	cert := inst.Cert
	if at := RenewalTime(cert, v.Want); !v.Now.Before(at) {
		return StateRenewalDue, fmt.Sprintf("renewal was due at %s", at.UTC().Format(time.RFC3339))
	}
	if want := v.Want.CommonName; want != "" && cert.Subject.CommonName != want {
		return StateCreateCSR, fmt.Sprintf("common name changed from %q to %q", cert.Subject.CommonName, want)
	}
	if have, want := certSANs(cert), normalSANs(v.Want.SANs); !slices.Equal(have, want) {
		return StateCreateCSR, fmt.Sprintf("SANs changed from %v to %v", have, want)
	}
	if !keyMatches(cert, v.Want) {
		return StateCreateCSR, fmt.Sprintf("key changed to %s %d", v.Want.KeyAlgorithm, v.Want.KeySize)
	}
	if v.crlRevokes(cert.SerialNumber) {
		return StateRenewalDue, "the group's CRL revokes this certificate (the unit was away longer than ca.revoke_departed_after)"
	}
	if p := v.Units[v.Unit][KeyProfile]; p != "" && v.Want.Profile != "" && p != v.Want.Profile {
		return StateCreateCSR, fmt.Sprintf("profile changed from %s to %s", p, v.Want.Profile)
	}
	if ca == "" {
		return "", ""
	}
	roots, err := v.bundleCerts(ca)
	if err != nil {
		return StateCreateCSR, "certificate does not chain to the group CA: CA bundle: " + err.Error()
	}
	var chained error
	var fromSigningCA bool
	v.installed(cert, func(s *slot) {
		if chained = s.verifyChain(roots, ca, v.Now); chained == nil {
			fromSigningCA = s.checkedBy(roots[0], func() error { return cert.CheckSignatureFrom(roots[0]) })
		}
	})
	if chained != nil {
		return StateCreateCSR, "certificate does not chain to the group CA: " + chained.Error()
	}
	if !fromSigningCA { // a CA rotation: the group signs with its bundle's first CA now
		return StateRenewalDue, fmt.Sprintf("CA rotation: the group now signs with CA %s", caseal.Fingerprint(roots[0].Raw)[:16])
	}
	return "", ""
}

// keyMatches: the certificate's key is of the algorithm and size asked for (or nothing
// is asked).
func keyMatches(cert *x509.Certificate, w Want) bool { return keySpecMatches(cert.PublicKey, w) }

func keySpecMatches(pub crypto.PublicKey, w Want) bool {
	if w.KeyAlgorithm == "" {
		return true
	}
	k := certutil.KeySpecOf(pub)
	return k.Algorithm == w.KeyAlgorithm && (k.Size == w.KeySize || w.KeyAlgorithm == "ed25519")
}

// RenewalTime is when a certificate is due for renewal: after the fraction w.RenewAt of
// its lifetime, less a jitter of up to w.RenewJitter of it that the certificate's serial
// picks (so a fleet signed at once does not renew at once, and the same certificate is
// always due at the same time). The lifetime counts from NotBefore, or from NotAfter less
// the validity asked for when that is later: signers backdate NotBefore by minutes, which
// would make a short-lived certificate due on issue. RenewAt outside (0,1] means expiry.
func RenewalTime(cert *x509.Certificate, w Want) time.Time {
	if w.RenewAt <= 0 || w.RenewAt > 1 {
		return cert.NotAfter
	}
	start := cert.NotBefore
	if issued := cert.NotAfter.Add(-w.Validity); w.Validity > 0 && issued.After(start) {
		start = issued
	}
	fraction := w.RenewAt
	if w.RenewJitter > 0 {
		sum := sha256.Sum256(cert.SerialNumber.Bytes())
		u := float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53) // [0,1)
		fraction = max(fraction-w.RenewJitter*u, 0)
	}
	life := cert.NotAfter.Sub(start)
	return start.Add(time.Duration(float64(life) * fraction))
}
