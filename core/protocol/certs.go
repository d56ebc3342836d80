package protocol

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/policy"

	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// UnitDNSName is a unit's name as a DNS label: "db/0" becomes "db-0". Every unit's
// certificate carries it as a SAN, since "/" cannot appear in a DNS name.
func UnitDNSName(unit string) string { return policy.UnitDNSName(unit) }

// signedLeaf returns the leaf of unit's certificate chain in leader data if it
// certifies pub and chains to the CA bundle caPEM.
func (v View) signedLeaf(unit string, pub crypto.PublicKey, caPEM string) (leaf *x509.Certificate, err error) {
	roots, err := v.bundleCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	key := SignedCertificateKey(unit)
	v.Parsed.use(slotKey{place: inLeaderData, key: key}, v.LeaderData[key], func(s *slot) {
		var certs []*x509.Certificate
		if certs, err = s.parseCerts(); err != nil {
			return
		}
		if !certutil.SamePublicKey(certs[0].PublicKey, pub) {
			err = errors.New("certificate is for another key")
			return
		}
		if err = s.verifyChain(roots, caPEM, v.Now); err == nil {
			leaf = certs[0]
		}
	})
	return leaf, err
}

// installed runs f on the slot of the unit's installed certificate: the slot of its
// certificate in leader data when that is the installed one, alone (what a unit verified
// while it waited need not be verified again once installed), else a slot of its own.
func (v View) installed(cert *x509.Certificate, f func(*slot)) {
	key := SignedCertificateKey(v.Unit)
	if chain := v.LeaderData[key]; chain != "" {
		done := false
		v.Parsed.use(slotKey{place: inLeaderData, key: key}, chain, func(s *slot) {
			if certs, err := s.parseCerts(); err == nil && len(certs) == 1 && bytes.Equal(certs[0].Raw, cert.Raw) {
				f(s)
				done = true
			}
		})
		if done {
			return
		}
	}
	v.Parsed.use(slotKey{place: own, key: ownInstalled}, string(cert.Raw), func(s *slot) {
		if !s.certsDone {
			s.certs, s.certsDone = []*x509.Certificate{cert}, true
		}
		f(s)
	})
}

// verifyChain checks that the slot's certificates (parsed) chain to one of the CAs in
// the bundle caPEM (roots, parsed) at time now. A chain that verified is remembered with
// the window in which all its certificates are valid.
func (s *slot) verifyChain(roots []*x509.Certificate, caPEM string, now time.Time) error {
	if s.chainCA != "" && s.chainCA == caPEM && s.chainWindow.holds(now) {
		return nil
	}
	leaf := s.certs[0]
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, cert := range s.certs[1:] {
		opts.Intermediates.AddCert(cert)
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return err
	}
	w := window{from: leaf.NotBefore, to: leaf.NotAfter}
	for _, cert := range chains[0] {
		w.from, w.to = latest(w.from, cert.NotBefore), earliest(w.to, cert.NotAfter)
	}
	s.chainCA, s.chainWindow = caPEM, w
	if len(chains[0]) > 1 { // the issuer's signature verified: checkedBy need not check it again
		s.checkedBy(chains[0][1], func() error { return nil })
	}
	return nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// certSANs lists a certificate's DNS and IP SANs as sorted text.
func certSANs(cert *x509.Certificate) []string {
	sans := slices.Clone(cert.DNSNames)
	for _, ip := range cert.IPAddresses {
		sans = append(sans, ip.String())
	}
	slices.Sort(sans)
	return slices.Compact(sans)
}

// normalSANs sorts and de-duplicates wanted SANs, writing IPs as Go prints them.
func normalSANs(sans []string) []string {
	out := make([]string, 0, len(sans))
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			s = ip.String()
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func containsCert(certs []*x509.Certificate, raw []byte) bool {
	for _, c := range certs {
		if bytes.Equal(c.Raw, raw) {
			return true
		}
	}
	return false
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func byFingerprint(certs []*x509.Certificate, fp string) *x509.Certificate {
	for _, c := range certs {
		if caseal.Fingerprint(c.Raw) == fp {
			return c
		}
	}
	return nil
}

// missing returns the certificates of a that b lacks.
func missing(a, b []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range a {
		if !containsCert(b, c.Raw) {
			out = append(out, c)
		}
	}
	return out
}

func joinCerts(lists ...[]*x509.Certificate) string {
	var b strings.Builder
	for _, list := range lists {
		for _, c := range list {
			b.Write(encodeCert(c))
		}
	}
	return b.String()
}
