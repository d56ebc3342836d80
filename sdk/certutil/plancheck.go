package certutil

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// planSlack absorbs the time between asking and signing, and a CA that backdates or
// rounds a lifetime to the minute.
const planSlack = 10 * time.Minute

// Check checks a certificate a signer outside this process returned for the plan (a
// remote CA's answer) before it is handed on: the subject is the CSR's common name
// alone, the SANs are the CSR's, the key is the CSR's, the usages are the profile's,
// it is no CA, it lives for the plan's validity, and it chains to ca. A remote CA whose
// profile copies the CSR's organisation into the subject, or silently drops a SAN,
// fails here, not in a peer's handshake. Every problem is named; the error is
// Internal, with unit as its reference.
func (p SignPlan) Check(chainPEM []byte, ca *x509.Certificate, unit string) (*x509.Certificate, error) {
	return p.CheckAt(chainPEM, ca, unit, time.Now())
}

// CheckAt is Check at now, the asker's clock: a certificate valid only from later than
// a few minutes on is refused (tlsrelay's leader checks every signer's answer before it
// publishes it).
func (p SignPlan) CheckAt(chainPEM []byte, ca *x509.Certificate, unit string, now time.Time) (*x509.Certificate, error) {
	certs, err := ParseCertificates(chainPEM)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, unit, "the signer's answer: %v", err)
	}
	return certs[0], p.CheckLeafAt(certs[0], ca, unit, now)
}

// CheckLeafAt is CheckAt for a leaf already parsed; with ca nil its signature is not
// checked (a caller that checked it already: a signature is the costliest check).
func (p SignPlan) CheckLeafAt(leaf *x509.Certificate, ca *x509.Certificate, unit string, now time.Time) error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if s := leaf.Subject; s.CommonName != p.CSR.Subject.CommonName || len(s.Names) != 1 {
		add("subject %q, want CN=%s alone", s.String(), p.CSR.Subject.CommonName)
	}
	if !slices.Equal(sortedStrings(leaf.DNSNames), sortedStrings(p.CSR.DNSNames)) {
		add("DNS names %v, want %v", leaf.DNSNames, p.CSR.DNSNames)
	}
	if !slices.Equal(ipStrings(leaf.IPAddresses), ipStrings(p.CSR.IPAddresses)) {
		add("IP addresses %v, want %v", leaf.IPAddresses, p.CSR.IPAddresses)
	}
	if !slices.Equal(uriStrings(leaf.URIs), uriStrings(p.CSR.URIs)) {
		add("URIs %v, want %v", leaf.URIs, p.CSR.URIs)
	}
	if len(leaf.EmailAddresses) > 0 {
		add("email addresses %v, which are never signed", leaf.EmailAddresses)
	}
	if !SamePublicKey(leaf.PublicKey, p.CSR.PublicKey) {
		add("its key is not the CSR's")
	}
	if leaf.IsCA || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		add("it is a CA certificate (or may sign certificates or CRLs)")
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		add("its key usage lacks digitalSignature, which a TLS handshake needs")
	}
	if !slices.Equal(sortedUsages(leaf.ExtKeyUsage), sortedUsages(p.Usages.Extended)) {
		add("extended key usages %v, want %v", leaf.ExtKeyUsage, p.Usages.Extended)
	}
	// Its lifetime, not its dates, is judged: a signer's clock may differ from the
	// asker's by minutes. Tools that count in days (openssl -days) round the validity up
	// to a whole day; a signer may backdate by Backdate.
	life, longest := leaf.NotAfter.Sub(leaf.NotBefore), time.Duration(Days(p.Validity))*24*time.Hour+Backdate+planSlack
	if life < p.Validity-planSlack || life > longest {
		add("it lives %s (%s to %s), want the validity %s (up to a whole day more, from up to %s before now)", life,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), p.Validity, Backdate)
	}
	if leaf.NotBefore.After(now.Add(planSlack)) {
		add("it is valid only from %s, %s after this host's clock says it is now: the signer's clock or this host's is wrong (check NTP on both)",
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotBefore.Sub(now).Round(time.Second))
	}
	if ca != nil {
		if err := leaf.CheckSignatureFrom(ca); err != nil {
			add("it is not signed by the CA %q: %v", ca.Subject.CommonName, err)
		} else if leaf.NotAfter.After(ca.NotAfter) {
			add("it outlives its CA (%s, the CA %s)", leaf.NotAfter.UTC().Format(time.RFC3339), ca.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if len(problems) > 0 {
		return sdk.Errorf(sdk.CodeInternal, unit, "the signer's certificate does not match the request: %s", strings.Join(problems, "; "))
	}
	return nil
}

func sortedStrings(s []string) []string { return slices.Sorted(slices.Values(s)) }

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return sortedStrings(out)
}

func uriStrings(uris []*url.URL) []string {
	out := make([]string, len(uris))
	for i, u := range uris {
		out[i] = u.String()
	}
	return sortedStrings(out)
}

func sortedUsages(u []x509.ExtKeyUsage) []x509.ExtKeyUsage { return slices.Sorted(slices.Values(u)) }
