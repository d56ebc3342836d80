package protocol

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// decideSelf is the unit side of the protocol, the same for leader and followers.
func decideSelf(v View) Decision {
	ca := v.LeaderData[KeyCA]
	if p := v.Local.Pending; p != nil {
		return decidePending(v, p, ca)
	}
	inst := v.Local.Installed
	if inst == nil {
		return Decision{State: StateCreateCSR, Detail: "no certificate yet",
			Actions: []Action{CreateCSR{Reason: "no certificate yet"}}}
	}
	if due, reason := renewalDue(v, inst, ca); due != "" {
		return Decision{State: due, Detail: reason, Actions: []Action{CreateCSR{Reason: reason}}}
	}
	d := Decision{State: StateCertificateAvailable, Detail: "expires " + inst.Cert.NotAfter.UTC().Format(time.RFC3339)}
	if ca != "" && ca != inst.CAPEM {
		d.Actions = append(d.Actions, InstallCA{CAPEM: ca})
	}
	return d
}

// decidePending handles a unit that has published a CSR and waits for its certificate.
func decidePending(v View, p *Pending, ca string) Decision {
	if chain := v.LeaderData[SignedCertificateKey(v.Unit)]; chain != "" && ca != "" {
		// A certificate for another key (the one before a lost key, a stale one) is
		// never accepted: it would pair our key with someone else's certificate.
		if cert, err := leafFor(chain, p.PublicKey, ca, v.Now); err == nil && cert != nil {
			return Decision{State: StateCertificateAvailable, Detail: "installing serial " + cert.SerialNumber.Text(16),
				Actions: []Action{InstallCertificate{ChainPEM: chain, CAPEM: ca}}}
		}
	}
	if r, ok := DecodeRejection(v.LeaderData[RejectionKey(v.Unit)]); ok && r.CSRDigest == Digest(p.CSRPEM) {
		return Decision{State: StateRejected, Detail: r.Reason}
	}
	d := Decision{State: StateAwaitingCertificate, Detail: "CSR published"}
	bag := v.Units[v.Unit]
	if bag[KeyCSR] != p.CSRPEM || bag[KeyProfile] != v.Want.Profile {
		// Our bag lost the CSR (a restart, a relation reset) or never had it: re-send.
		d.Detail = "publishing CSR"
		d.Actions = []Action{PublishCSR{CSRPEM: p.CSRPEM, Profile: v.Want.Profile}}
	}
	return d
}

// renewalDue says whether the installed certificate must be replaced, as a state and a
// reason; an empty state means it is fine.
func renewalDue(v View, inst *Installed, ca string) (State, string) {
	cert := inst.Cert
	if at := RenewalTime(cert, v.Want.RenewAt); !v.Now.Before(at) {
		return StateRenewalDue, fmt.Sprintf("renewal was due at %s", at.UTC().Format(time.RFC3339))
	}
	if want := v.Want.CommonName; want != "" && cert.Subject.CommonName != want {
		return StateCreateCSR, fmt.Sprintf("common name changed from %q to %q", cert.Subject.CommonName, want)
	}
	if have, want := certSANs(cert), normalSANs(v.Want.SANs); !slices.Equal(have, want) {
		return StateCreateCSR, fmt.Sprintf("SANs changed from %v to %v", have, want)
	}
	if ca != "" {
		if err := verifyChain(cert, nil, ca, v.Now); err != nil {
			return StateCreateCSR, "certificate does not chain to the group CA: " + err.Error()
		}
	}
	return "", ""
}

// RenewalTime is when a certificate is due for renewal: after the fraction renewAt of its
// lifetime (renewAt outside (0,1] means at expiry).
func RenewalTime(cert *x509.Certificate, renewAt float64) time.Time {
	if renewAt <= 0 || renewAt > 1 {
		return cert.NotAfter
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(time.Duration(float64(life) * renewAt))
}
