package protocol

import (
	"crypto/x509"
	"net"
	"slices"
	"strings"

	"github.com/tlsrelay/tlsrelay/core/policy"
)

// One name, one holder. A name only one unit may hold (its own names, IP SANs, names a
// policy.units rule makes exclusive: every name but a shared one) belongs to the unit
// whose certificate carries it for as long as that certificate is valid: until it
// expires, or the group's CRL lists it. Not for as long as the unit is joined: a unit
// killed or cut off keeps its certificate, and a peer that trusts the group CA would
// take either holder's. Departures release names only through revocation (a departure
// past ca.revoke_departed_after, `tlsrelay revoke`), which is why a departed unit's
// leader data stays until the published CRL lists its certificates (planDepartures).
//
// The leader decides claims over the whole snapshot before anything is signed, and within
// a decision: a CSR it decides to sign claims its names before the next unit's is
// judged, so two CSRs asking for one name in one snapshot (one batch) never both pass.

// claims maps each name held alone to its holder.
type claims map[string]string

// holders reads who holds which name from leader data: every unit's current certificate
// and the earlier ones it was issued (IssuedKey), joined or not, less those expired or
// revoked by the published CRL. Where two units hold one name (a state an earlier
// version could leave), the first in unit order keeps it, so the answer never depends on
// map order.
func holders(v View, pol *policy.Policy) claims {
	revoked := v.crlSerials()
	held := claims{}
	var units []string
	for key := range v.LeaderData {
		if unit, ok := strings.CutSuffix(key, certificateSuffix); ok && unit != "" {
			units = append(units, unit)
		} else if unit, ok := strings.CutSuffix(key, issuedSuffix); ok && unit != "" {
			units = append(units, unit)
		}
	}
	slices.Sort(units)
	for _, unit := range slices.Compact(units) {
		for _, is := range issuedTo(v, unit) {
			if revoked[is.Serial] {
				continue
			}
			for _, name := range is.Names {
				if _, taken := held[name]; !taken && pol.Exclusive(unit, name) {
					held[name] = unit
				}
			}
		}
	}
	return held
}

// claim records that unit is being signed for the names of csr it holds alone.
func (c claims) claim(pol *policy.Policy, unit string, csr *x509.CertificateRequest) {
	for _, name := range namesOf(csr.DNSNames, csr.IPAddresses) {
		if _, taken := c[name]; !taken && pol.Exclusive(unit, name) {
			c[name] = unit
		}
	}
}

// namesOf lists DNS names (policy.Normalize'd) and IPs (as text) as claims compare them:
// sorted, without repeats.
func namesOf(dns []string, ips []net.IP) []string {
	names := make([]string, 0, len(dns)+len(ips))
	for _, d := range dns {
		names = append(names, policy.Normalize(d))
	}
	for _, ip := range ips {
		names = append(names, ip.String())
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// crlSerials are the serials the published CRL lists, read once per CRL.
func (v View) crlSerials() map[string]bool {
	var set map[string]bool
	v.Parsed.use(slotKey{place: inLeaderData, key: KeyCRL}, v.LeaderData[KeyCRL], func(s *slot) {
		if s.serials == nil {
			s.serials = map[string]bool{}
			if crl, err := s.parseCRL(); err == nil {
				for _, serial := range crlRevoked(crl) {
					s.serials[serial] = true
				}
			}
		}
		set = s.serials
	})
	return set
}
