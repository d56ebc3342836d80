// Package verify proves what tlsrelay promises about a group's files: each unit holds a
// private key (mode 0600) and a certificate for that key that chains to the group CA
// and names the unit, and every pair of units completes a mutual-TLS handshake.
package verify

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Unit names a unit and its output directory.
type Unit struct {
	Name string
	Dir  string
	// CommonName is the common name its certificate must have (certificate.common_name
	// rendered for it); "" is the unit's name.
	CommonName string
	// Profile is what its certificate is for: server, client or peer ("" is peer). It
	// says which side of a handshake the unit can take.
	Profile string
}

// CanServe and CanDial say which side of a handshake the unit's profile allows.
func (u Unit) CanServe() bool { return u.Profile != "client" }
func (u Unit) CanDial() bool  { return u.Profile != "server" }

// commonName is the common name its certificate has: CommonName, or its name.
func (u Unit) commonName() string {
	if u.CommonName != "" {
		return u.CommonName
	}
	return u.Name
}

// Identity is a unit's verified certificate material.
type Identity struct {
	Unit
	Cert    *x509.Certificate
	TLSCert tls.Certificate
	Roots   *x509.CertPool
	CAPEM   []byte // ca.crt as written
}

// Load checks one unit's files and returns its identity. Every failure names the unit
// and the file.
func Load(u Unit) (*Identity, error) {
	keyPath := filepath.Join(u.Dir, agent.KeyFile)
	info, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.Name, err)
	}
	if mode := info.Mode().Perm(); mode != agent.KeyMode {
		return nil, fmt.Errorf("%s: %s has mode %04o, want %04o", u.Name, keyPath, mode, agent.KeyMode)
	}
	certPath, caPath := filepath.Join(u.Dir, agent.CertFile), filepath.Join(u.Dir, agent.CAFile)
	tlsCert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %s and %s: %w", u.Name, certPath, keyPath, err)
	}
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.Name, err)
	}
	cas, err := certutil.ParseCertificates(caPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", u.Name, caPath, err)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	cert := tlsCert.Leaf
	dnsName := protocol.UnitDNSName(u.Name)
	// As OpenSSL verifies it: the anchors from ca.crt alone, the intermediates only from
	// what the unit sends (the rest of tls.crt), and a chain that ends at a root.
	sent := x509.NewCertPool()
	for _, der := range tlsCert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			sent.AddCert(c)
		}
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: sent, DNSName: dnsName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("%s: %s does not verify against %s for %s: %w", u.Name, certPath, caPath, dnsName, err)
	}
	if !slices.ContainsFunc(chains, func(chain []*x509.Certificate) bool { return selfSigned(chain[len(chain)-1]) }) {
		top := chains[0][len(chains[0])-1]
		return nil, fmt.Errorf("%s: %s verifies against %s only by taking %q as an anchor, which is not a root: OpenSSL, haproxy and nginx refuse such a partial chain (give the root with the group's CA)",
			u.Name, certPath, caPath, top.Subject.CommonName)
	}
	if cert.Subject.CommonName != u.commonName() {
		return nil, fmt.Errorf("%s: %s has common name %q, want %q", u.Name, certPath, cert.Subject.CommonName, u.commonName())
	}
	if !slices.Contains(cert.DNSNames, dnsName) {
		return nil, fmt.Errorf("%s: %s lacks the SAN %s", u.Name, certPath, dnsName)
	}
	return &Identity{Unit: u, Cert: cert, TLSCert: tlsCert, Roots: roots, CAPEM: caPEM}, nil
}

// LoadAll loads every unit, failing on the first that does not verify.
func LoadAll(units []Unit) ([]*Identity, error) {
	ids := make([]*Identity, 0, len(units))
	for _, u := range units {
		id, err := Load(u)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// SameCA checks that every unit wrote the same CA bundle (ca.crt) as the first.
func SameCA(ids []*Identity) error {
	for _, id := range ids[1:] {
		if !bytes.Equal(id.CAPEM, ids[0].CAPEM) {
			return fmt.Errorf("%s: its %s differs from %s's: the group does not share one CA bundle", id.Name, agent.CAFile, ids[0].Name)
		}
	}
	return nil
}

// OneHolder checks that no name only one unit may hold (every name exclusive says so of
// its unit) is in two units' certificates.
func OneHolder(ids []*Identity, exclusive func(unit, name string) bool) error {
	holder := map[string]string{}
	for _, id := range ids {
		names := slices.Clone(id.Cert.DNSNames)
		for _, ip := range id.Cert.IPAddresses {
			names = append(names, ip.String())
		}
		for _, name := range names {
			name = strings.TrimSuffix(strings.ToLower(name), ".")
			if !exclusive(id.Name, name) {
				continue
			}
			if other, ok := holder[name]; ok && other != id.Name {
				return fmt.Errorf("%s and %s both hold %s: one name, one holder", other, id.Name, name)
			}
			holder[name] = id.Name
		}
	}
	return nil
}

// selfSigned: a root, which OpenSSL takes as an anchor without -partial_chain.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
