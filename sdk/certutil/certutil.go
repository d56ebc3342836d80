// Package certutil holds the checks every signer must make the same way, so that
// backends agree on what a valid CSR, key spec and profile are, and classify bad input
// with the same error codes. Backends in Go use it; it is part of the stable sdk.
package certutil

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// MaxRSABits bounds RSA key generation: beyond it a request is a typo or an attack on
// the signer's CPU.
const MaxRSABits = 8192

// CheckKeySpec validates a requested key: ecdsa 256 or 384, rsa 2048 to MaxRSABits.
func CheckKeySpec(k sdk.KeySpec) error {
	switch k.Algorithm {
	case "ecdsa":
		if k.Size != 256 && k.Size != 384 {
			return sdk.Errorf(sdk.CodeInvalidArgument, "key.size", "ecdsa keys are 256 or 384 bits, not %d", k.Size)
		}
	case "rsa":
		if k.Size < 2048 || k.Size > MaxRSABits {
			return sdk.Errorf(sdk.CodeInvalidArgument, "key.size", "rsa keys are 2048 to %d bits, not %d", MaxRSABits, k.Size)
		}
	default:
		return sdk.Errorf(sdk.CodeInvalidArgument, "key.algorithm", "%q is not one of ecdsa, rsa", k.Algorithm)
	}
	return nil
}

// SplitSANs sorts SAN strings into DNS names and IP addresses.
func SplitSANs(sans []string) (dns []string, ips []net.IP) {
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, s)
		}
	}
	return dns, ips
}

// ParseCSR decodes a PEM CSR and checks its signature. Every failure is
// InvalidArgument naming unit, so a signer never retries or half-signs a bad request.
func ParseCSR(csrPEM []byte, unit string) (*x509.CertificateRequest, error) {
	csr, err := parseCSRUnverified(csrPEM, unit)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, unitRef(unit), "CSR signature does not verify: %v", err)
	}
	return csr, nil
}

// parseCSRUnverified is ParseCSR without the signature check (three quarters of its cost
// for a P-256 CSR), for a signer whose signing library checks it
// (CheckSignRequestExceptSignature).
func parseCSRUnverified(csrPEM []byte, unit string) (*x509.CertificateRequest, error) {
	// One block and only whitespace around it: pem.Decode skips text it cannot read, so
	// a malformed block (a bad END line) before a valid one would go unseen here, while
	// openssl stops at it.
	if !bytes.HasPrefix(bytes.TrimLeft(csrPEM, " \t\r\n"), []byte("-----BEGIN ")) {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, unitRef(unit), "CSR is not PEM: it must start with a -----BEGIN line")
	}
	block, rest := pem.Decode(csrPEM)
	if block == nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, unitRef(unit), "CSR is not PEM: its block does not parse (check the BEGIN and END lines)")
	}
	if bytes.Count(csrPEM[:len(csrPEM)-len(rest)], []byte("-----BEGIN ")) > 1 {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, unitRef(unit), "CSR PEM: a malformed block comes before the %q block", block.Type)
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, unitRef(unit), "CSR PEM block is %q, not CERTIFICATE REQUEST", block.Type)
	}
	// Headers such as Proc-Type: 4,ENCRYPTED would make a tool that reads the PEM
	// (openssl) ask for a pass phrase; a CSR never has any.
	if len(block.Headers) > 0 {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, unitRef(unit), "CSR PEM carries headers (%s); a CSR has none", headerNames(block.Headers))
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, unitRef(unit), "CSR PEM holds more than one block (a %q follows)", next.Type)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, unitRef(unit), "CSR PEM has text after its block; only whitespace may follow")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, unitRef(unit), "CSR does not parse: %v", err)
	}
	return csr, nil
}

func headerNames(h map[string]string) string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func unitRef(unit string) string {
	if unit == "" {
		return "csr"
	}
	return "csr of " + unit
}

// Usages are the key usages a profile grants.
type Usages struct {
	Key      x509.KeyUsage
	Extended []x509.ExtKeyUsage
}

// UsagesFor is the profile's usages for a certificate of key pub: keyEncipherment only
// for an RSA key that serves (RSA key exchange), since an EC key cannot encipher (RFC
// 5480; zlint's e_ecdsa_allowed_ku) and a client only signs (zlint's
// e_key_usage_and_extended_key_usage_inconsistent). An unknown profile is
// InvalidArgument.
func UsagesFor(p sdk.Profile, pub crypto.PublicKey) (Usages, error) {
	u, err := ProfileUsages(p)
	if _, isRSA := pub.(*rsa.PublicKey); !isRSA || p == sdk.ProfileClient {
		u.Key &^= x509.KeyUsageKeyEncipherment
	}
	return u, err
}

// ProfileUsages maps a profile to its usages for an RSA key (UsagesFor gives them for
// any key). An unknown profile is InvalidArgument.
func ProfileUsages(p sdk.Profile) (Usages, error) {
	base := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	switch p {
	case sdk.ProfileServer:
		return Usages{base, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, nil
	case sdk.ProfileClient:
		return Usages{base, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, nil
	case sdk.ProfilePeer:
		return Usages{base, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, nil
	}
	return Usages{}, sdk.Errorf(sdk.CodeInvalidArgument, "profile", "%q is not one of server, client, peer", p)
}

// Validity returns the lifetime to sign for: the request's, or def when it is zero.
// A negative validity is InvalidArgument.
func Validity(requested, def time.Duration) (time.Duration, error) {
	switch {
	case requested < 0:
		return 0, sdk.Errorf(sdk.CodeInvalidArgument, "validity", "%s is negative", requested)
	case requested == 0:
		return def, nil
	}
	return requested, nil
}

// Backdate is how far before now a certificate's NotBefore is set, so that peers whose
// clocks lag a little accept it at once.
const Backdate = 5 * time.Minute

// KeySpecOf names a public key as a KeySpec does: "ecdsa" with its curve's size, "rsa"
// with its modulus', "ed25519" with size 0; any other key by its Go type.
func KeySpecOf(pub crypto.PublicKey) sdk.KeySpec {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return sdk.KeySpec{Algorithm: "ecdsa", Size: k.Curve.Params().BitSize}
	case *rsa.PublicKey:
		return sdk.KeySpec{Algorithm: "rsa", Size: k.N.BitLen()}
	case ed25519.PublicKey:
		return sdk.KeySpec{Algorithm: "ed25519"}
	}
	return sdk.KeySpec{Algorithm: fmt.Sprintf("%T", pub)}
}

// SamePublicKey reports whether two public keys are equal.
func SamePublicKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch k := a.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return k.(equaler).Equal(b)
	}
	return false
}

// ParseCertificates decodes every CERTIFICATE block of a PEM bundle, in order.
func ParseCertificates(bundle []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of bundle: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no CERTIFICATE block in PEM")
	}
	return certs, nil
}

// ParsePrivateKeyPEM parses the first private key block of a PEM text, in the clear
// (PKCS#8, PKCS#1 or SEC 1), skipping other blocks (a certificate before the key, EC
// parameters). A text without one says which blocks it holds.
func ParsePrivateKeyPEM(keyPEM []byte) (crypto.Signer, error) {
	var seen []string
	var block *pem.Block
	for rest := keyPEM; ; {
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(seen) == 0 {
				return nil, fmt.Errorf("private key is not PEM")
			}
			return nil, fmt.Errorf("no PRIVATE KEY block in the PEM (it holds %s)", strings.Join(seen, ", "))
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			break
		}
		seen = append(seen, block.Type)
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("private key (%s) does not parse: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", key)
	}
	return signer, nil
}

// PublicKeyOfPrivatePEM returns the public key of a PEM private key.
func PublicKeyOfPrivatePEM(keyPEM []byte) (crypto.PublicKey, error) {
	signer, err := ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	return signer.Public(), nil
}

// CheckSAN accepts an IP address, or a DNS name of letters, digits, '-', '_', '.' and a
// leading "*." wildcard, at most 253 characters. Backends that hand SANs to a tool's
// configuration call it first: a SAN with a comma, a newline or an '=' could otherwise
// add extensions of its own.
func CheckSAN(san, ref string) error {
	if net.ParseIP(san) != nil {
		return nil
	}
	name := strings.TrimPrefix(san, "*.")
	ok := name != "" && len(san) <= 253
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			ok = false
		}
	}
	if !ok {
		return sdk.Errorf(sdk.CodeInvalidArgument, ref, "SAN %q is neither an IP address nor a DNS name", san)
	}
	return nil
}

// Days rounds a validity up to whole days, at least one, for tools that count in days.
// It cannot overflow: the largest duration is some 106,751 days.
func Days(validity time.Duration) int {
	const day = 24 * time.Hour
	days := int(validity / day)
	if validity%day != 0 {
		days++
	}
	return max(1, days)
}

// CheckSubject accepts a CSR's subject as every signer and tlsrelay's policy do: exactly
// one common name (Go keeps the last of several, OpenSSL the first, so two would name
// two identities), one that CheckCommonName accepts. The errors say which.
func CheckSubject(csr *x509.CertificateRequest) error {
	if n := countCommonNames(csr); n != 1 {
		return fmt.Errorf("the subject has %d common names; exactly one is signed", n)
	}
	return CheckCommonName(csr.Subject.CommonName)
}

// countCommonNames counts the CN attributes of a CSR's subject.
func countCommonNames(csr *x509.CertificateRequest) int {
	n := 0
	for _, atv := range csr.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			n++
		}
	}
	return n
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// ToolSANs lists a checked CSR's SANs as OpenSSL's config syntax writes them ("DNS:a",
// "IP:10.0.0.1", "URI:spiffe://corp/db/0"), for backends that hand SANs to a tool. Each
// is checked first, so no SAN can smuggle a ',' or a newline into the tool's config.
func ToolSANs(csr *x509.CertificateRequest, unit string) ([]string, error) {
	ref := unitRef(unit)
	var out []string
	for _, d := range csr.DNSNames {
		if err := CheckSAN(d, ref); err != nil {
			return nil, err
		}
		out = append(out, "DNS:"+d)
	}
	for _, ip := range csr.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	for _, u := range csr.URIs {
		s := u.String()
		if !safeURI(s) {
			return nil, sdk.Errorf(sdk.CodeInvalidArgument, ref, "URI SAN %q has characters a signer does not copy", s)
		}
		out = append(out, "URI:"+s)
	}
	return out, nil
}

func safeURI(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":/._~%@+=?#&-", r)) {
			return false
		}
	}
	return s != ""
}

// MaxSANs bounds the SANs any signer copies from one CSR, whatever the leader's policy.
const MaxSANs = 1000

// CheckCSRContent makes the checks on a CSR's content that every signer makes whatever
// the leader's policy: a key worth certifying (RSA 2048 to MaxRSABits bits, ECDSA P-256,
// P-384 or P-521, Ed25519), exactly one common name that CheckCommonName accepts, DNS
// SANs that are DNS names, no email SANs, at most MaxSANs.
func CheckCSRContent(csr *x509.CertificateRequest, unit string) error {
	ref := unitRef(unit)
	if err := CheckSubject(csr); err != nil {
		return sdk.Errorf(sdk.CodeInvalidArgument, ref, "%v", err)
	}
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > MaxRSABits {
			return sdk.Errorf(sdk.CodeInvalidArgument, ref, "RSA key of %d bits: 2048 to %d are signed", bits, MaxRSABits)
		}
	case *ecdsa.PublicKey:
	case ed25519.PublicKey:
	default:
		return sdk.Errorf(sdk.CodeInvalidArgument, ref, "a %T key is not signed", csr.PublicKey)
	}
	if len(csr.EmailAddresses) > 0 {
		return sdk.Errorf(sdk.CodeInvalidArgument, ref, "email SANs %q are not signed", csr.EmailAddresses)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.URIs); n > MaxSANs {
		return sdk.Errorf(sdk.CodeInvalidArgument, ref, "%d SANs, more than the %d a signer copies", n, MaxSANs)
	}
	for _, d := range csr.DNSNames {
		if err := CheckSAN(d, ref); err != nil || net.ParseIP(d) != nil {
			return sdk.Errorf(sdk.CodeInvalidArgument, ref, "DNS SAN %q is not a DNS name", d)
		}
	}
	return nil
}

// MaxCommonNameLength is X.520's upper bound on a common name (ub-common-name).
const MaxCommonNameLength = 64

// CheckCommonName accepts the common names a certificate may carry: 1 to
// MaxCommonNameLength characters, each an ASCII letter or digit, a space (not first or
// last), or one of - . _ : @ * /. No control character, and none of the separators
// (= , + ; " \ < > #) that would let a name read as more than one attribute in a
// printed subject (openssl's /CN=a/O=b or CN=a,O=b).
func CheckCommonName(cn string) error {
	switch {
	case cn == "":
		return fmt.Errorf("the common name is empty")
	case len(cn) > MaxCommonNameLength:
		return fmt.Errorf("the common name is %d characters, more than %d", len(cn), MaxCommonNameLength)
	case cn[0] == ' ' || cn[len(cn)-1] == ' ':
		return fmt.Errorf("common name %q starts or ends with a space", cn)
	}
	for _, r := range cn {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(" -._:@*/", r)) {
			return fmt.Errorf("common name %q has the character %q; letters, digits, spaces and - . _ : @ * / are signed", cn, r)
		}
	}
	return nil
}

// CheckCSRRequest makes the checks every CreateCSR makes: a valid key spec, a common
// name, and SANs that are IP addresses or DNS names.
func CheckCSRRequest(req sdk.CSRRequest) error {
	if err := CheckKeySpec(req.Key); err != nil {
		return err
	}
	if err := CheckCommonName(req.CommonName); err != nil {
		return sdk.Errorf(sdk.CodeInvalidArgument, "common_name", "%v", err)
	}
	for _, san := range req.SANs {
		if err := CheckSAN(san, req.CommonName); err != nil {
			return err
		}
	}
	return nil
}

// SignPlan is a sign request that passed the checks every signer makes.
type SignPlan struct {
	CSR      *x509.CertificateRequest
	Usages   Usages
	Validity time.Duration
}

// CheckSignRequest makes the checks every SignCSR makes, in order: the profile, the CSR
// (PEM, parse, signature, CheckCSRContent), the validity (zero: defaultValidity). Every failure is
// InvalidArgument.
func CheckSignRequest(req sdk.SignRequest, defaultValidity time.Duration) (SignPlan, error) {
	return checkSignRequest(req, defaultValidity, ParseCSR)
}

// CheckSignRequestExceptSignature is CheckSignRequest but for the CSR's signature, for
// a signer whose signing library checks it itself (cfssl's signer does): the signature
// is then checked once in the plugin, not twice.
func CheckSignRequestExceptSignature(req sdk.SignRequest, defaultValidity time.Duration) (SignPlan, error) {
	return checkSignRequest(req, defaultValidity, parseCSRUnverified)
}

func checkSignRequest(req sdk.SignRequest, defaultValidity time.Duration, parse func([]byte, string) (*x509.CertificateRequest, error)) (SignPlan, error) {
	if _, err := ProfileUsages(req.Profile); err != nil {
		return SignPlan{}, err
	}
	csr, err := parse(req.CSRPEM, req.Unit)
	if err != nil {
		return SignPlan{}, err
	}
	usages, _ := UsagesFor(req.Profile, csr.PublicKey)
	if err := CheckCSRContent(csr, req.Unit); err != nil {
		return SignPlan{}, err
	}
	validity, err := Validity(req.Validity, defaultValidity)
	if err != nil {
		return SignPlan{}, err
	}
	return SignPlan{CSR: csr, Usages: usages, Validity: validity}, nil
}

// CheckCAKeyPair checks a CA offered to ImportCA: one CA certificate, still valid, and a
// private key that belongs to it. Errors are InvalidArgument.
func CheckCAKeyPair(ca sdk.CAKeyPair) (*x509.Certificate, error) {
	certs, err := ParseCertificates(ca.CertPEM)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "ca certificate", "%v", err)
	}
	cert := certs[0]
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "ca certificate", "%q is not a CA certificate", cert.Subject.CommonName)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "ca certificate", "%q expired at %s", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	pub, err := PublicKeyOfPrivatePEM(ca.Key)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "ca key", "%v", err)
	}
	if !SamePublicKey(cert.PublicKey, pub) {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "ca key", "the key does not belong to CA %q", cert.Subject.CommonName)
	}
	return cert, nil
}
