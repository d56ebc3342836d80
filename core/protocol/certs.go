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
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/internal/memo"

	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// UnitDNSName is a unit's name as a DNS label: "db/0" becomes "db-0". Every unit's
// certificate carries it as a SAN, since "/" cannot appear in a DNS name.
func UnitDNSName(unit string) string { return policy.UnitDNSName(unit) }

// leafFor returns the leaf of chain if it certifies pub and chains to the CA bundle.
func (c *Cache) leafFor(chainPEM string, pub crypto.PublicKey, caPEM string, now time.Time) (*x509.Certificate, error) {
	certs, err := c.parseCerts(chainPEM)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if !certutil.SamePublicKey(leaf.PublicKey, pub) {
		return nil, errors.New("certificate is for another key")
	}
	if err := c.verifyChain(leaf, certs[1:], caPEM, now); err != nil {
		return nil, err
	}
	return leaf, nil
}

// verifyChain checks that leaf chains to one of the CAs in the bundle at time now.
// A chain that verified is remembered with the window in which all its certificates
// are valid: the signatures verify the same way every time, only the time changes.
func (c *Cache) verifyChain(leaf *x509.Certificate, intermediates []*x509.Certificate, caPEM string, now time.Time) error {
	parts := [][]byte{leaf.Raw, []byte(caPEM)}
	for _, cert := range intermediates {
		parts = append(parts, cert.Raw)
	}
	key := memo.KeyOf(parts...)
	if w, ok := c.memos().chains.Get(key); ok && !now.Before(w.from) && !now.After(w.to) {
		return nil
	}
	roots, err := c.parseCerts(caPEM)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, cert := range intermediates {
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
	c.memos().chains.Put(key, w)
	// Each link's signature verified: signedBy need not check it again.
	for i := 0; i+1 < len(chains[0]); i++ {
		c.memos().signatures.Put(memo.KeyOf(chains[0][i].Raw, chains[0][i+1].Raw), true)
	}
	return nil
}

// signedBy says whether issuer's key signed cert. Every unit asks at every decision
// whether its certificate is the signing CA's (a CA rotation), so the answer is
// remembered: a signature check is the costliest part of that decision.
func (c *Cache) signedBy(cert, issuer *x509.Certificate) bool {
	ok, _ := c.memos().signatures.Remember(memo.KeyOf(cert.Raw, issuer.Raw), func() (bool, error) {
		return cert.CheckSignatureFrom(issuer) == nil, nil
	})
	return ok
}

// window is when every certificate of a verified chain is valid.
type window struct{ from, to time.Time }

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

// parseCerts is certutil.ParseCertificates, remembered. The certificates may be shared:
// read them only (the slice is the caller's own).
func (c *Cache) parseCerts(pemText string) ([]*x509.Certificate, error) {
	certs, err := c.memos().certs.Remember(memo.KeyOf([]byte(pemText)), func() ([]*x509.Certificate, error) {
		return certutil.ParseCertificates([]byte(pemText))
	})
	return slices.Clone(certs), err
}
