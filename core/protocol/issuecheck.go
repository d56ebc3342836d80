package protocol

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// IssueCheck checks a certificate a signer returned for a SignCSR before the leader
// records it as signed or publishes it: the policy judged the CSR, and this judges the
// answer against what it approved. The certificate must be for the CSR's key, with the
// CSR's common name alone as its subject and exactly its names, the profile's usages, no
// CA, the validity asked for, signed by the group's signing CA and chaining to the
// bundle units verify it with (SignCSR.CA). A signer that adds a name, drops one, grants
// both usages to a server or copies the CSR's organisation is caught here, not by a peer
// or an auditor. One IssueCheck serves a batch (it parses the bundle once); its zero
// value is ready.
type IssueCheck struct {
	caPEM string
	cas   []*x509.Certificate
	err   error
}

// ErrOtherCA is an answer signed by another CA than the one the leader's signer said it
// holds: the signer's CA has moved since the leader loaded it (a remote CA's service
// rotated), or the signer is wrong. The leader loads the signer's CA again
// (SignerCAChanged) and publishes nothing signed by it meanwhile.
var ErrOtherCA = errors.New("the signer answered with another CA than it holds")

// Check judges chainPEM, the signer's answer to act, at now (the leader's clock). The
// error names the unit and says every way the answer differs: ErrOtherCA when another
// CA signed it, else Internal.
func (c *IssueCheck) Check(act SignCSR, chainPEM string, now time.Time) (*x509.Certificate, error) {
	if c.cas == nil && c.err == nil || c.caPEM != act.CA {
		c.caPEM = act.CA
		c.cas, c.err = certutil.ParseCertificates([]byte(act.CA))
	}
	if c.err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, act.Unit, "the group's CA bundle: %v", c.err)
	}
	csr, err := parseOwnCSR(act.CSRPEM) // its signature verified when the policy judged it
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, act.Unit, "the CSR: %v", err)
	}
	usages, err := certutil.UsagesFor(sdk.Profile(act.Profile), csr.PublicKey)
	if err != nil {
		return nil, err
	}
	chain, err := certutil.ParseCertificates([]byte(chainPEM))
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, act.Unit, "the signer's answer: %v", err)
	}
	leaf, signing := chain[0], c.cas[0]
	// One signature check: a leaf the bundle's first CA signed chains to the bundle units
	// verify it with, while that CA is valid.
	if leaf.CheckSignatureFrom(signing) != nil {
		return nil, fmt.Errorf("%w: the certificate for %s is signed by %q, not by %q", ErrOtherCA, act.Unit,
			leaf.Issuer.CommonName, signing.Subject.CommonName)
	}
	plan := certutil.SignPlan{CSR: csr, Usages: usages, Validity: act.Validity}
	if err := plan.CheckLeafAt(leaf, nil, act.Unit, now); err != nil {
		return nil, err
	}
	switch {
	case leaf.NotAfter.After(signing.NotAfter):
		return nil, sdk.Errorf(sdk.CodeInternal, act.Unit, "the signer's certificate outlives its CA (%s, the CA %s)",
			leaf.NotAfter.UTC().Format(time.RFC3339), signing.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(signing.NotBefore) || now.After(signing.NotAfter):
		return nil, sdk.Errorf(sdk.CodeInternal, act.Unit, "the group's signing CA %q is valid from %s to %s, and this host's clock says it is %s: if the clock is wrong, check NTP",
			signing.Subject.CommonName, signing.NotBefore.UTC().Format(time.RFC3339), signing.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return leaf, nil
}

// CheckCRL judges a CRL the signer returned for act: signed by the group's signing CA
// (SignCRL.CA), or ErrOtherCA; listing exactly the serials act revokes (a CRL that drops
// one un-revokes a certificate; one that adds one revokes a unit no rule did); with
// act's number (the next is numbered from it); current at act.Now and for at least half
// CRLLifetime (one due again at once would be signed again at once).
func (c *IssueCheck) CheckCRL(act SignCRL, crlPEM string) error {
	cas, err := certutil.ParseCertificates([]byte(act.CA))
	if err != nil {
		return fmt.Errorf("the group's CA bundle: %w", err)
	}
	crl, err := certutil.ParseCRL([]byte(crlPEM))
	if err != nil {
		return fmt.Errorf("the signer's CRL: %w", err)
	}
	if crl.CheckSignatureFrom(cas[0]) != nil {
		return fmt.Errorf("%w: the CRL is signed by %q, not by %q", ErrOtherCA, crl.Issuer.CommonName, cas[0].Subject.CommonName)
	}
	var problems []string
	if crl.Number == nil || act.Number == nil || crl.Number.Cmp(act.Number) != 0 {
		problems = append(problems, fmt.Sprintf("its number is %v, not %v", crl.Number, act.Number))
	}
	if crl.ThisUpdate.After(act.Now.Add(certutil.Backdate)) || crl.NextUpdate.Sub(act.Now) < CRLLifetime/2 {
		problems = append(problems, fmt.Sprintf("it is current from %s to %s, not at %s (this host's clock) for %s: a signer that ignores the times asked for, or whose clock is wrong",
			crl.ThisUpdate.UTC().Format(time.RFC3339), crl.NextUpdate.UTC().Format(time.RFC3339), act.Now.UTC().Format(time.RFC3339), CRLLifetime/2))
	}
	want := make(map[string]bool, len(act.Revoked))
	for _, r := range act.Revoked {
		want[r.Serial] = true
	}
	var extra []string
	listed := make(map[string]bool, len(want))
	for _, serial := range certutil.Revoked(crl) {
		hex := serial.Text(16)
		if !want[hex] {
			extra = append(extra, hex)
		}
		listed[hex] = true
	}
	var dropped []string
	for _, r := range act.Revoked {
		if !listed[r.Serial] {
			dropped = append(dropped, r.Serial)
		}
	}
	if len(dropped) > 0 {
		problems = append(problems, fmt.Sprintf("it leaves out %d revoked serial(s) (%s)", len(dropped), firstFew(dropped)))
	}
	if len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("it lists %d serial(s) nothing revoked (%s)", len(extra), firstFew(extra)))
	}
	if len(problems) > 0 {
		return fmt.Errorf("the signer's CRL: %s", strings.Join(problems, "; "))
	}
	return nil
}

// firstFew joins the first serials of a list that may be long.
func firstFew(serials []string) string {
	if len(serials) > 3 {
		return strings.Join(serials[:3], ", ") + ", ..."
	}
	return strings.Join(serials, ", ")
}
