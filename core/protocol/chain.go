package protocol

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"slices"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// A group whose CA is an intermediate (root -> int1 -> int2, int2 signing) is trusted by
// consumers through its root: they load the root as their trust anchor and need every
// certificate between it and a leaf sent with the leaf. The leader publishes the group's
// signing CAs (KeyCA) and, in KeyCAChain, the certificates above them that it knows
// (intermediates, and the root when known); each unit writes
//
//   - tls.crt: its leaf, then the signing CA and the intermediates above it, up to and
//     not including a self-signed root (what a TLS server sends);
//   - ca.crt: the anchors, each signing CA's root, or the topmost certificate known
//     when the chain stops short of one (a partial chain: AnchorsPartial).
//
// A group whose signing CAs are self-signed, the default, has no chain: tls.crt is the
// signed certificate and ca.crt the bundle, as they always were. Decisions go on judging
// by KeyCA; only the files change.

// caChainCerts parses the signing CAs and the chain above them from leader data.
func (v View) caChainCerts() (signing, above []*x509.Certificate) {
	signing, _ = v.leaderCerts(KeyCA)
	if v.LeaderData[KeyCAChain] != "" {
		above, _ = v.leaderCerts(KeyCAChain)
	}
	return signing, above
}

// issuerIn finds the certificate in pool that issued cert (its subject and signature).
func issuerIn(cert *x509.Certificate, pool []*x509.Certificate) *x509.Certificate {
	for _, c := range pool {
		if !c.Equal(cert) && bytes.Equal(c.RawSubject, cert.RawIssuer) && cert.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

func selfSigned(c *x509.Certificate) bool {
	return selfIssued(c) && c.CheckSignatureFrom(c) == nil
}

// selfIssued: the certificate names itself as its issuer. The cheap test, for the
// question asked at every decision: does the group have a chain at all?
func selfIssued(c *x509.Certificate) bool { return bytes.Equal(c.RawSubject, c.RawIssuer) }

// noChain: the signing CAs are all self-issued and no chain is published: ca.crt is the
// bundle and tls.crt the signed certificate, as in a group without intermediates.
func noChain(signing []*x509.Certificate, chainPEM string) bool {
	return chainPEM == "" && !slices.ContainsFunc(signing, func(c *x509.Certificate) bool { return !selfIssued(c) })
}

// pathUp is ca and the certificates above it in pool, in order, ending at a self-signed
// one or where no issuer is known.
func pathUp(ca *x509.Certificate, pool []*x509.Certificate) []*x509.Certificate {
	path := []*x509.Certificate{ca}
	for c := ca; !selfSigned(c) && len(path) <= len(pool); {
		if c = issuerIn(c, pool); c == nil || slices.ContainsFunc(path, c.Equal) {
			break
		}
		path = append(path, c)
	}
	return path
}

// CAFile is what a unit writes as ca.crt for the signing CAs in bundlePEM and the chain
// above them (chainPEM): the anchors, in the order of the CAs they anchor. With no chain
// it is bundlePEM itself. partial: some CA's path ends at a certificate that is not
// self-signed (its root is unknown), which is then its anchor.
func CAFile(bundlePEM, chainPEM string) (file string, partial bool) {
	signing, err := certutil.ParseCertificates([]byte(bundlePEM))
	if err != nil {
		return bundlePEM, false
	}
	var above []*x509.Certificate
	if chainPEM != "" {
		above, _ = certutil.ParseCertificates([]byte(chainPEM))
	}
	return caFileOf(bundlePEM, signing, above)
}

func caFileOf(bundlePEM string, signing, above []*x509.Certificate) (string, bool) {
	if len(above) == 0 && noChain(signing, "") {
		return bundlePEM, false
	}
	var anchors []*x509.Certificate
	partial := false
	for _, ca := range signing {
		path := pathUp(ca, append(slices.Clone(signing), above...))
		top := path[len(path)-1]
		partial = partial || !selfSigned(top)
		if !slices.ContainsFunc(anchors, top.Equal) {
			anchors = append(anchors, top)
		}
	}
	return string(joinRaw(anchors)), partial
}

// caFile is ca.crt for the group's published CA and chain.
func (v View) caFile() string {
	ca := v.LeaderData[KeyCA]
	signing, above := v.caChainCerts()
	if len(signing) == 0 || noChain(signing, v.LeaderData[KeyCAChain]) {
		return ca
	}
	file, _ := caFileOf(ca, signing, above)
	return file
}

// unitChain is what a unit writes as tls.crt for the chain a signer returned: that chain
// and, when the issuer of its last certificate is a signing CA that is not self-signed,
// that CA and the certificates above it, short of a self-signed root.
func (v View) unitChain(signedPEM string) string {
	signed, err := certutil.ParseCertificates([]byte(signedPEM))
	if err != nil {
		return signedPEM
	}
	signing, above := v.caChainCerts()
	pool := append(slices.Clone(signing), above...)
	issuer := issuerIn(signed[len(signed)-1], pool)
	if issuer == nil || selfSigned(issuer) {
		return signedPEM
	}
	var more []*x509.Certificate
	for _, c := range pathUp(issuer, pool) {
		if selfSigned(c) || slices.ContainsFunc(signed, c.Equal) {
			break
		}
		more = append(more, c)
	}
	if len(more) == 0 {
		return signedPEM
	}
	return signedPEM + string(joinRaw(more))
}

// chainFor is the chain the leader publishes (KeyCAChain) for the signing CAs in
// bundlePEM: the certificates of known (its own, the one published) that lie on the path
// from one of them to its root, in the order met.
func chainFor(bundlePEM string, known ...string) string {
	signing, err := certutil.ParseCertificates([]byte(bundlePEM))
	if err != nil {
		return ""
	}
	var pool []*x509.Certificate
	for _, pemText := range known {
		if certs, err := certutil.ParseCertificates([]byte(pemText)); err == nil {
			pool = append(pool, certs...)
		}
	}
	var chain []*x509.Certificate
	for _, ca := range signing {
		for _, c := range pathUp(ca, append(slices.Clone(signing), pool...))[1:] {
			if !slices.ContainsFunc(signing, c.Equal) && !slices.ContainsFunc(chain, c.Equal) {
				chain = append(chain, c)
			}
		}
	}
	return string(joinRaw(chain))
}

// TrustedCAs lists, as units report them (KeyTrusts), the fingerprints of the CAs a
// ca.crt makes trusted: its own certificates, and the signing CAs in bundlePEM whose
// path through chainPEM reaches one of them.
func TrustedCAs(caFilePEM, bundlePEM, chainPEM string) []string {
	anchors, err := certutil.ParseCertificates([]byte(caFilePEM))
	if err != nil {
		return nil
	}
	var fps []string
	for _, a := range anchors {
		fps = append(fps, caseal.Fingerprint(a.Raw))
	}
	signing, _ := certutil.ParseCertificates([]byte(bundlePEM))
	above, _ := certutil.ParseCertificates([]byte(chainPEM))
	for _, ca := range signing {
		path := pathUp(ca, append(slices.Clone(signing), above...))
		if fp := caseal.Fingerprint(ca.Raw); !slices.Contains(fps, fp) && slices.ContainsFunc(anchors, path[len(path)-1].Equal) {
			fps = append(fps, fp)
		}
	}
	return fps
}

func joinRaw(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, certutil.CertPEM(c.Raw)...)
	}
	return out
}

// installCA is the action that brings an installed unit's ca.crt to the group's (the
// bundle ca, with the chain above it), or nil when it is there or nothing is installed.
func (v View) installCA(ca string) Action {
	inst := v.Local.Installed
	if inst == nil || ca == "" {
		return nil
	}
	if file := v.caFile(); file != inst.CAPEM {
		return InstallCA{CAPEM: file}
	}
	return nil
}

// installChain is the action that adds to an installed tls.crt the intermediates the
// group published since (a chain learned after the certificate was installed), or nil.
func (v View) installChain(inst *Installed) Action {
	if v.LeaderData[KeyCAChain] == "" {
		return nil // a chain published since the install is the question
	}
	want := v.unitChain(string(certutil.CertPEM(inst.Cert.Raw)))
	wantCerts, err := certutil.ParseCertificates([]byte(want))
	if err != nil || len(wantCerts) < 2 {
		return nil
	}
	have, _ := certutil.ParseCertificates([]byte(inst.ChainPEM))
	for _, c := range wantCerts[1:] {
		if !slices.ContainsFunc(have, c.Equal) {
			return InstallChain{ChainPEM: want}
		}
	}
	return nil
}

// chainCRLs is what the leader publishes as KeyCAChainCRL from what ca.chain_crl_file
// holds: the CRLs, in their order, that a certificate of the published chain signed.
// Another's (a CRL of the group's own CA, of a CA not in the chain) is left out: a unit
// would trust it for nothing, and a consumer would read a stranger's list.
func chainCRLs(chainPEM, file string) string {
	chain, err := certutil.ParseCertificates([]byte(chainPEM))
	if err != nil {
		return ""
	}
	var out []byte
	for rest := []byte(file); ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(chain, func(c *x509.Certificate) bool { return crl.CheckSignatureFrom(c) == nil }) {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: block.Bytes})...)
		}
	}
	return string(out)
}
