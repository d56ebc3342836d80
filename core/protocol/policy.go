package protocol

import (
	"crypto/x509"
	"fmt"
)

// Policy is what the leader allows a unit to ask for.
type Policy struct {
	// CommonName returns the common name a unit's CSR must carry; nil means the unit's
	// own name.
	CommonName func(unit string) string
}

// Check returns why the leader refuses a unit's CSR, or "" when it may be signed. A unit
// may ask only for its own common name and never for a name that identifies another
// unit of the group (its unit name or DNS name), whatever else it lists.
func (p Policy) Check(unit string, csr *x509.CertificateRequest, profile string, units map[string]map[string]string) string {
	switch profile {
	case "server", "client", "peer":
	default:
		return fmt.Sprintf("profile %q of %s is not one of server, client, peer", profile, unit)
	}
	want := unit
	if p.CommonName != nil {
		want = p.CommonName(unit)
	}
	if cn := csr.Subject.CommonName; cn != want {
		return fmt.Sprintf("CSR of %s asks for common name %q; it may ask only for %q", unit, cn, want)
	}
	names := append([]string{csr.Subject.CommonName}, csr.DNSNames...)
	for other := range units {
		if other == unit {
			continue
		}
		for _, name := range names {
			if name == other || name == UnitDNSName(other) {
				return fmt.Sprintf("CSR of %s asks for %q, a name of unit %s", unit, name, other)
			}
		}
	}
	return ""
}
