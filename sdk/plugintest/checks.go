package plugintest

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

var allCapabilities = []sdk.Capability{sdk.CapCreateCSR, sdk.CapSignCSR, sdk.CapCA,
	sdk.CapFetchSecret, sdk.CapStoreSecret, sdk.CapDeleteSecret, sdk.CapCAExport, sdk.CapCAImport, sdk.CapCRL, sdk.CapSignCSRs,
	sdk.CapCAGenerate, sdk.CapCAShared, sdk.CapCARemote}

// The names every CSR in the kit asks for.
var (
	testCN   = "plugintest/0"
	testDNS  = []string{"plugintest-0", "localhost"}
	testIPs  = []string{"127.0.0.1", "::1"}
	testSANs = append(slices.Clone(testDNS), testIPs...)
)

func checkInfo(e *env) error {
	var p problems
	if e.info.Name == "" {
		p.addf("Info: empty name")
	}
	if e.info.Version == "" {
		p.addf("Info: empty version")
	}
	for _, c := range e.info.Capabilities {
		if !slices.Contains(allCapabilities, c) {
			p.addf("Info: unknown capability %q", c)
		}
	}
	return p.err()
}

func checkUnclaimed(e *env) error {
	calls := map[sdk.Capability]func() error{
		sdk.CapCreateCSR: func() error {
			_, err := e.backend.CreateCSR(e.ctx, sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: testCN})
			return err
		},
		sdk.CapSignCSR: func() error {
			_, err := e.backend.SignCSR(e.ctx, sdk.SignRequest{CSRPEM: []byte(goCSR(testCN, testSANs)), Profile: sdk.ProfilePeer})
			return err
		},
		sdk.CapCA:           func() error { _, err := e.backend.CA(e.ctx); return err },
		sdk.CapFetchSecret:  func() error { _, err := e.backend.FetchSecret(e.ctx, "plugintest-ref"); return err },
		sdk.CapStoreSecret:  func() error { _, err := e.backend.StoreSecret(e.ctx, "plugintest", sdk.Secret{}); return err },
		sdk.CapDeleteSecret: func() error { return e.backend.DeleteSecret(e.ctx, "plugintest-ref") },
		sdk.CapCAExport:     func() error { _, err := e.backend.ExportCA(e.ctx); return err },
		sdk.CapCAImport:     func() error { return e.backend.ImportCA(e.ctx, sdk.CAKeyPair{}) },
		sdk.CapCRL: func() error {
			_, err := sdk.SignCRL(e.ctx, e.backend, crlRequest(time.Now(), big.NewInt(1)))
			return err
		},
		sdk.CapCAGenerate: func() error {
			_, err := sdk.GenerateCA(e.ctx, e.backend, sdk.GenerateCARequest{CommonName: "plugintest CA", Validity: 24 * time.Hour})
			return err
		},
		sdk.CapSignCSRs: func() error {
			bs, ok := e.backend.(sdk.BatchSigner)
			if !ok {
				return sdk.Errorf(sdk.CodeUnimplemented, "", "not a BatchSigner")
			}
			_, err := bs.SignCSRs(e.ctx, []sdk.SignRequest{{CSRPEM: []byte(goCSR(testCN, testSANs)), Profile: sdk.ProfilePeer}})
			return err
		},
	}
	var p problems
	for _, c := range allCapabilities {
		if e.claims(c) || calls[c] == nil { // ca_shared and ca_remote are claims, not calls
			continue
		}
		if err := calls[c](); !sdk.IsCode(err, sdk.CodeUnimplemented) {
			p.addf("%s is not claimed but answers %v, not Unimplemented", c, err)
		}
	}
	return p.err()
}

func checkCreateCSR(e *env) error {
	var p problems
	for _, spec := range e.opts.KeySpecs {
		csr, err := e.backend.CreateCSR(e.ctx, sdk.CSRRequest{Key: spec, CommonName: testCN, SANs: testSANs})
		if err != nil {
			p.addf("CreateCSR %s %d: %v", spec.Algorithm, spec.Size, err)
			continue
		}
		if err := checkCSR(csr, spec); err != nil {
			p.addf("CreateCSR %s %d: %w", spec.Algorithm, spec.Size, err)
		}
	}
	for _, bad := range []sdk.KeySpec{{Algorithm: "rsa", Size: 1024}, {Algorithm: "dsa", Size: 2048}} {
		if _, err := e.backend.CreateCSR(e.ctx, sdk.CSRRequest{Key: bad, CommonName: testCN}); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
			p.addf("CreateCSR %s %d: %v, want InvalidArgument", bad.Algorithm, bad.Size, err)
		}
	}
	good := sdk.KeySpec{Algorithm: "ecdsa", Size: 256}
	if _, err := e.backend.CreateCSR(e.ctx, sdk.CSRRequest{Key: good, CommonName: testCN, SANs: []string{"a,DNS:evil.example"}}); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
		p.addf("CreateCSR with the SAN %q: %v, want InvalidArgument", "a,DNS:evil.example", err)
	}
	if _, err := e.backend.CreateCSR(e.ctx, sdk.CSRRequest{Key: good}); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
		p.addf("CreateCSR without a common name: %v, want InvalidArgument", err)
	}
	return p.err()
}

// checkCSR verifies a CreateCSR result against what was asked.
func checkCSR(csr sdk.CSR, spec sdk.KeySpec) error {
	req, err := certutil.ParseCSR(csr.CSRPEM, "")
	if err != nil {
		return err
	}
	pub, err := certutil.PublicKeyOfPrivatePEM(csr.Key)
	if err != nil {
		return fmt.Errorf("returned key: %w", err)
	}
	var p problems
	if !certutil.SamePublicKey(req.PublicKey, pub) {
		p.addf("the returned key is not the CSR's key")
	}
	if req.Subject.CommonName != testCN {
		p.addf("CSR common name %q, want %q", req.Subject.CommonName, testCN)
	}
	if err := sameNames(req.DNSNames, req.IPAddresses); err != nil {
		p.addf("CSR %w", err)
	}
	if got := certutil.KeySpecOf(req.PublicKey); got != spec {
		p.addf("CSR key is %s %d, want %s %d", got.Algorithm, got.Size, spec.Algorithm, spec.Size)
	}
	return p.err()
}

func sameNames(dns []string, ips []net.IP) error {
	gotIPs := make([]string, len(ips))
	for i, ip := range ips {
		gotIPs[i] = ip.String()
	}
	if !sameSet(dns, testDNS) || !sameSet(gotIPs, testIPs) {
		return fmt.Errorf("SANs are DNS %v IP %v, want DNS %v IP %v", dns, gotIPs, testDNS, testIPs)
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// caRoots fetches CA() as a pool and its first certificate.
func caRoots(e *env) (*x509.CertPool, *x509.Certificate, error) {
	ca, err := e.backend.CA(e.ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("CA: %w", err)
	}
	certs, err := certutil.ParseCertificates(ca.BundlePEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, certs[0], nil
}

func checkCA(e *env) error {
	_, first, err := caRoots(e)
	if err != nil {
		return err
	}
	var p problems
	if !first.IsCA || !first.BasicConstraintsValid {
		p.addf("CA certificate %q is not marked as a CA", first.Subject)
	}
	if now := time.Now(); now.Before(first.NotBefore) || now.After(first.NotAfter) {
		p.addf("CA certificate is not valid now (%s to %s)", first.NotBefore, first.NotAfter)
	}
	if _, again, err := caRoots(e); err != nil || !again.Equal(first) {
		p.addf("a second CA() call returned another CA (%v)", err)
	}
	return p.err()
}

// profileEKUs is what each profile must grant, exactly.
var profileEKUs = map[sdk.Profile][]x509.ExtKeyUsage{
	sdk.ProfileServer: {x509.ExtKeyUsageServerAuth},
	sdk.ProfileClient: {x509.ExtKeyUsageClientAuth},
	sdk.ProfilePeer:   {x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
}

// sign signs a fresh Go-made CSR and returns the verified leaf.
func sign(e *env, profile sdk.Profile, validity time.Duration) (*x509.Certificate, error) {
	csrPEM := goCSR(testCN, testSANs)
	chain, err := e.backend.SignCSR(e.ctx, sdk.SignRequest{CSRPEM: []byte(csrPEM), Profile: profile, Validity: validity, Unit: testCN})
	if err != nil {
		return nil, fmt.Errorf("SignCSR %s: %w", profile, err)
	}
	return verifyLeaf(e, chain.ChainPEM, csrPEM, profile)
}

func verifyLeaf(e *env, chainPEM []byte, csrPEM string, profile sdk.Profile) (*x509.Certificate, error) {
	certs, err := certutil.ParseCertificates(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("SignCSR %s: chain: %w", profile, err)
	}
	leaf := certs[0]
	roots, _, err := caRoots(e)
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	var p problems
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: profileEKUs[profile]}); err != nil {
		p.addf("%s certificate does not verify against CA() for its usages: %v", profile, err)
	}
	if !sameEKUs(leaf.ExtKeyUsage, profileEKUs[profile]) {
		p.addf("%s certificate has extended key usages %v, want %v", profile, leaf.ExtKeyUsage, profileEKUs[profile])
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		p.addf("%s certificate lacks the digital signature key usage", profile)
	}
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		p.addf("%s certificate can sign certificates", profile)
	}
	// RFC 5280 4.2.1.1 and 4.2.1.2: the authority key identifier links the leaf to the
	// key that signed it (a chain builder picks the issuer by it when a CA's name was
	// reused, as rotations do), and the subject key identifier names the leaf's key.
	if len(leaf.AuthorityKeyId) == 0 {
		p.addf("%s certificate lacks an authority key identifier (RFC 5280 4.2.1.1)", profile)
	}
	if len(leaf.SubjectKeyId) == 0 {
		p.addf("%s certificate lacks a subject key identifier (RFC 5280 4.2.1.2)", profile)
	}
	req, _ := certutil.ParseCSR([]byte(csrPEM), "")
	if !certutil.SamePublicKey(leaf.PublicKey, req.PublicKey) {
		p.addf("%s certificate is not for the CSR's key", profile)
	}
	if leaf.Subject.CommonName != testCN {
		p.addf("%s certificate common name %q, want %q", profile, leaf.Subject.CommonName, testCN)
	}
	if err := sameNames(leaf.DNSNames, leaf.IPAddresses); err != nil {
		p.addf("%s certificate %w", profile, err)
	}
	return leaf, p.err()
}

func sameEKUs(a, b []x509.ExtKeyUsage) bool {
	if len(a) != len(b) {
		return false
	}
	for _, u := range b {
		if !slices.Contains(a, u) {
			return false
		}
	}
	return true
}

func checkProfiles(e *env) error {
	var p problems
	for _, profile := range sdk.Profiles {
		if _, err := sign(e, profile, 0); err != nil {
			p = append(p, err)
		}
	}
	return p.err()
}

// slack absorbs the time between asking and signing, and backends that backdate.
const slack = 10 * time.Minute

func checkValidity(e *env) error {
	if e.opts.FixedValidity > 0 {
		return checkFixedValidity(e)
	}
	var p problems
	// Whole days: every backend can honour these exactly.
	for _, validity := range []time.Duration{48 * time.Hour, 10 * 24 * time.Hour} {
		asked := time.Now()
		leaf, err := sign(e, sdk.ProfilePeer, validity)
		if err != nil {
			p = append(p, err)
			continue
		}
		if got := leaf.NotAfter.Sub(asked); got < validity-slack || got > validity+slack {
			p.addf("validity %s gave a certificate that expires %s after signing", validity, got.Round(time.Second))
		}
		if leaf.NotBefore.After(asked.Add(time.Minute)) || leaf.NotBefore.Before(asked.Add(-time.Hour)) {
			p.addf("validity %s: NotBefore %s is not about now (%s)", validity, leaf.NotBefore, asked)
		}
	}
	// Less than a day: backends with day granularity may round up, never down.
	asked := time.Now()
	if leaf, err := sign(e, sdk.ProfilePeer, 90*time.Minute); err != nil {
		p = append(p, err)
	} else if got := leaf.NotAfter.Sub(asked); got < 90*time.Minute-slack || got > 24*time.Hour+slack {
		p.addf("validity 1h30m gave a certificate that expires %s after signing", got.Round(time.Second))
	}
	if leaf, err := sign(e, sdk.ProfilePeer, 0); err != nil {
		p = append(p, err)
	} else if leaf.NotAfter.Before(time.Now().Add(time.Hour)) {
		p.addf("the default validity expires within the hour (%s)", leaf.NotAfter)
	}
	return p.err()
}

func checkSerials(e *env) error {
	seen := map[string]bool{}
	var p problems
	for range e.opts.Signings {
		leaf, err := sign(e, sdk.ProfilePeer, 0)
		if err != nil {
			return err
		}
		p = append(p, serialProblem(leaf.SerialNumber, seen)...)
	}
	return p.err()
}

func serialProblem(serial *big.Int, seen map[string]bool) problems {
	var p problems
	key := serial.Text(16)
	if serial.Sign() <= 0 {
		p.addf("serial %s is not positive", key)
	}
	if seen[key] {
		p.addf("serial %s issued twice", key)
	}
	seen[key] = true
	return p
}

func checkBadRequests(e *env) error {
	good := goCSR(testCN, testSANs)
	cases := []struct {
		name string
		req  sdk.SignRequest
	}{
		{"a garbage CSR", sdk.SignRequest{CSRPEM: []byte("this is not a CSR"), Profile: sdk.ProfilePeer, Unit: testCN}},
		{"a CSR with a bad signature", sdk.SignRequest{CSRPEM: []byte(tamperedCSR(good)), Profile: sdk.ProfilePeer, Unit: testCN}},
		{"an unknown profile", sdk.SignRequest{CSRPEM: []byte(good), Profile: "superuser", Unit: testCN}},
		{"a negative validity", sdk.SignRequest{CSRPEM: []byte(good), Profile: sdk.ProfilePeer, Validity: -time.Hour, Unit: testCN}},
	}
	var p problems
	for _, c := range cases {
		if _, err := e.backend.SignCSR(e.ctx, c.req); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
			p.addf("SignCSR with %s: %v, want InvalidArgument", c.name, err)
		}
	}
	return p.err()
}

func checkHostileCSRs(e *env) error {
	var p problems
	for _, h := range HostileCSRs(testCN) {
		_, err := e.backend.SignCSR(e.ctx, sdk.SignRequest{CSRPEM: []byte(h.CSRPEM), Profile: sdk.ProfilePeer, Unit: testCN})
		if !sdk.IsCode(err, sdk.CodeInvalidArgument) {
			p.addf("SignCSR with %s: %v, want InvalidArgument", h.Name, err)
		}
	}
	return p.err()
}

// checkSubjectAndURIs: a signer rebuilds the subject from the common name (an O or OU
// in the CSR is not copied) and copies a URI SAN (a SPIFFE ID the leader allowed), so
// every backend signs the same certificate for the same CSR.
func checkSubjectAndURIs(e *env) error {
	const uri = "spiffe://example.org/plugintest/0"
	csrPEM := MakeCSR(CSRRequest{
		Subject: pkix.Name{CommonName: testCN, Organization: []string{"evil"}, OrganizationalUnit: []string{"admins"}},
		DNS:     []string{"plugintest-0"}, URIs: []string{uri},
	})
	chain, err := e.backend.SignCSR(e.ctx, sdk.SignRequest{CSRPEM: []byte(csrPEM), Profile: sdk.ProfilePeer, Unit: testCN})
	if err != nil {
		return fmt.Errorf("SignCSR of a CSR with O, OU and a URI SAN: %w", err)
	}
	certs, err := certutil.ParseCertificates(chain.ChainPEM)
	if err != nil {
		return fmt.Errorf("SignCSR: chain: %w", err)
	}
	var p problems
	if got := certs[0].Subject.String(); got != "CN="+testCN {
		p.addf("certificate subject %q, want %q: the subject must be rebuilt from the common name", got, "CN="+testCN)
	}
	if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != uri {
		p.addf("certificate URI SANs %v, want [%s]", certs[0].URIs, uri)
	}
	return p.err()
}

// checkExtensionsNotCopied: a CSR that asks to be a CA (CA:TRUE, keyCertSign, code
// signing) is signed as the plain leaf of its profile.
func checkExtensionsNotCopied(e *env) error {
	dns, ips := certutil.SplitSANs(testSANs)
	csrPEM := MakeCSR(CSRRequest{Subject: pkix.Name{CommonName: testCN}, DNS: dns, IPs: ips, Extensions: CAExtensions()})
	chain, err := e.backend.SignCSR(e.ctx, sdk.SignRequest{CSRPEM: []byte(csrPEM), Profile: sdk.ProfilePeer, Unit: testCN})
	if err != nil {
		return fmt.Errorf("SignCSR of a CSR asking for CA:TRUE: %w", err)
	}
	leaf, err := verifyLeaf(e, chain.ChainPEM, csrPEM, sdk.ProfilePeer)
	if err != nil {
		return fmt.Errorf("a CSR asking for CA:TRUE, keyCertSign and code signing: %w", err)
	}
	if leaf.KeyUsage&x509.KeyUsageCRLSign != 0 {
		return fmt.Errorf("a CSR asking for cRLSign got a certificate that can sign CRLs")
	}
	return nil
}

func checkConcurrent(e *env) error {
	// The calls may queue in the signer: each has the time of all of them.
	at := *e
	at.ctx = queued(e.ctx, e.opts.Concurrent)
	e = &at
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		p    problems
		wg   sync.WaitGroup
	)
	for range e.opts.Concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leaf, err := sign(e, sdk.ProfilePeer, 0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				p = append(p, err)
				return
			}
			p = append(p, serialProblem(leaf.SerialNumber, seen)...)
		}()
	}
	wg.Wait()
	return p.err()
}

// checkSharedState starts three processes of the backend on one empty state directory
// at once and asks each for its CA: every unit of a group on one host runs its own
// plugin process on the same state directory, and they must create one CA, not three.
func checkSharedState(e *env) error {
	if e.info.Has(sdk.CapCARemote) {
		return notRun("a remote CA: its processes share the remote service, not a state directory, so one CA among them proves nothing here")
	}
	dir, err := os.MkdirTemp("", "plugintest-shared-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir) // the CA key with it
	const n = 3
	cas := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, stop, err := e.start(dir)
			if err != nil {
				errs[i] = fmt.Errorf("start process %d: %w", i+1, err)
				return
			}
			defer stop()
			ca, err := b.CA(e.ctx)
			cas[i], errs[i] = ca.BundlePEM, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var p problems
	first, err := certutil.ParseCertificates(cas[0])
	if err != nil {
		return fmt.Errorf("CA of process 1: %w", err)
	}
	for i := 1; i < n; i++ {
		certs, err := certutil.ParseCertificates(cas[i])
		if err != nil || !certs[0].Equal(first[0]) {
			p.addf("process %d of %d on one state directory has another CA than process 1 (%v): they raced to create it", i+1, n, err)
		}
	}
	return p.err()
}

func checkRestart(e *env) error {
	before, err := sign(e, sdk.ProfilePeer, 0)
	if err != nil {
		return err
	}
	_, caBefore, err := caRoots(e)
	if err != nil {
		return err
	}
	if err := e.restart(); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	roots, caAfter, err := caRoots(e)
	if err != nil {
		return fmt.Errorf("after restart: %w", err)
	}
	var p problems
	if !caAfter.Equal(caBefore) {
		p.addf("after a restart the CA is %q (serial %s), not the CA from before", caAfter.Subject, caAfter.SerialNumber.Text(16))
	}
	if _, err := before.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		p.addf("a certificate signed before the restart does not verify after it: %v", err)
	}
	if _, err := sign(e, sdk.ProfilePeer, 0); err != nil {
		p.addf("after restart: %w", err)
	}
	return p.err()
}

// checkCAMove: a CA exported is the CA() the backend reports, with its key; a CA
// imported becomes CA(), signs, and survives a restart; the original goes back after.
func checkCAMove(e *env) error {
	exp, imp := e.claims(sdk.CapCAExport), e.claims(sdk.CapCAImport)
	var p problems
	var original sdk.CAKeyPair
	if exp {
		var err error
		if original, err = e.backend.ExportCA(e.ctx); err != nil {
			return fmt.Errorf("ExportCA: %w", err)
		}
		_, current, err := caRoots(e)
		if err != nil {
			return err
		}
		if cert, err := certutil.CheckCAKeyPair(original); err != nil {
			p.addf("ExportCA returned an unusable CA: %v", err)
		} else if !cert.Equal(current) {
			p.addf("ExportCA returned CA %q, but CA() reports %q", cert.Subject, current.Subject)
		}
	}
	if !imp {
		return p.err()
	}
	certPEM, keyPEM := goCA("plugintest imported CA")
	if err := e.backend.ImportCA(e.ctx, sdk.CAKeyPair{CertPEM: certPEM, Key: keyPEM}); err != nil {
		return fmt.Errorf("ImportCA: %w", err)
	}
	if err := e.backend.ImportCA(e.ctx, sdk.CAKeyPair{CertPEM: certPEM, Key: original.Key}); exp && !sdk.IsCode(err, sdk.CodeInvalidArgument) {
		p.addf("ImportCA of a certificate with another CA's key answered %v, not InvalidArgument", err)
	}
	for _, when := range []string{"after ImportCA", "after ImportCA and a restart"} {
		if when != "after ImportCA" {
			if err := e.restart(); err != nil {
				return fmt.Errorf("restart: %w", err)
			}
		}
		_, current, err := caRoots(e)
		if err != nil {
			return fmt.Errorf("%s: %w", when, err)
		}
		if current.Subject.CommonName != "plugintest imported CA" {
			p.addf("%s, CA() is %q, not the imported CA", when, current.Subject)
		}
		if _, err := sign(e, sdk.ProfilePeer, 0); err != nil {
			p.addf("%s: %v", when, err)
		}
	}
	if exp {
		if err := e.backend.ImportCA(e.ctx, original); err != nil {
			p.addf("ImportCA of the exported original: %v", err)
		}
	}
	return p.err()
}

func crlRequest(now time.Time, serials ...*big.Int) sdk.CRLRequest {
	req := sdk.CRLRequest{ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour), Number: big.NewInt(7)}
	for _, s := range serials {
		req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: s, RevokedAt: now.Add(-time.Minute)})
	}
	return req
}

// checkCRL: a CRL the CA signed, listing exactly the serials asked for, with the number
// and times asked for; a request with its times reversed is InvalidArgument.
func checkCRL(e *env) error {
	_, ca, err := caRoots(e)
	if err != nil {
		return err
	}
	now := time.Now().Truncate(time.Second)
	serials := []*big.Int{big.NewInt(0x1234), new(big.Int).Lsh(big.NewInt(1), 150)}
	out, err := sdk.SignCRL(e.ctx, e.backend, crlRequest(now, serials...))
	if err != nil {
		return fmt.Errorf("SignCRL: %w", err)
	}
	crl, err := certutil.ParseCRL(out.PEM)
	if err != nil {
		return fmt.Errorf("SignCRL returned %w", err)
	}
	var p problems
	if err := crl.CheckSignatureFrom(ca); err != nil {
		p.addf("the CRL is not signed by CA() %q: %v", ca.Subject, err)
	}
	got := certutil.Revoked(crl)
	if len(got) != len(serials) || got[0].Cmp(serials[0]) != 0 || got[1].Cmp(serials[1]) != 0 {
		p.addf("the CRL revokes %v, want %v", got, serials)
	}
	if crl.Number == nil || crl.Number.Int64() != 7 || !crl.ThisUpdate.Equal(now) || !crl.NextUpdate.Equal(now.Add(24*time.Hour)) {
		p.addf("CRL number %v, this update %s, next update %s; want 7, %s, %s", crl.Number, crl.ThisUpdate, crl.NextUpdate, now, now.Add(24*time.Hour))
	}
	bad := crlRequest(now)
	bad.NextUpdate = now.Add(-time.Hour)
	if _, err := sdk.SignCRL(e.ctx, e.backend, bad); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
		p.addf("SignCRL with next update before this update: %v, want InvalidArgument", err)
	}
	return p.err()
}

// checkSignCSRs: one result per request, in order; a bad request fails alone, with
// InvalidArgument, and the good ones around it are signed as SignCSR would.
func checkSignCSRs(e *env) error {
	bs, ok := e.backend.(sdk.BatchSigner)
	if !ok {
		return fmt.Errorf("claims %s but is not an sdk.BatchSigner", sdk.CapSignCSRs)
	}
	profiles := []sdk.Profile{sdk.ProfileServer, sdk.ProfileClient, "", sdk.ProfilePeer, sdk.ProfilePeer}
	reqs := make([]sdk.SignRequest, len(profiles))
	for i, p := range profiles {
		reqs[i] = sdk.SignRequest{CSRPEM: []byte(goCSR(testCN, testSANs)), Profile: p, Unit: fmt.Sprintf("%s/%d", testCN, i)}
	}
	reqs[2].Profile = sdk.ProfilePeer
	reqs[2].CSRPEM = []byte("not a CSR") // the bad one, between good ones
	results, err := bs.SignCSRs(queued(e.ctx, len(reqs)), reqs)
	if err != nil {
		return fmt.Errorf("SignCSRs: %w", err)
	}
	if len(results) != len(reqs) {
		return fmt.Errorf("SignCSRs returned %d results for %d requests", len(results), len(reqs))
	}
	var p problems
	for i, r := range results {
		if i == 2 {
			if !sdk.IsCode(r.Err, sdk.CodeInvalidArgument) {
				p.addf("result %d (a garbage CSR): %v, want InvalidArgument", i, r.Err)
			}
			continue
		}
		if r.Err != nil {
			p.addf("result %d: %v", i, r.Err)
			continue
		}
		if _, err := verifyLeaf(e, r.Certificate.ChainPEM, string(reqs[i].CSRPEM), reqs[i].Profile); err != nil {
			p.addf("result %d: %v", i, err)
		}
	}
	if results, err := bs.SignCSRs(e.ctx, nil); err != nil || len(results) != 0 {
		p.addf("SignCSRs of no requests: %d results, %v; want none, no error", len(results), err)
	}
	return p.err()
}
