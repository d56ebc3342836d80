package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Custody is how the simulated signers keep the group's CA (sdk.Custody).
type Custody string

// The custodies the simulator runs.
const (
	// Exportable: each leader-eligible unit's signer makes its own CA; the group's is
	// sealed into leader data and imported by the next leader (cfssl, openssl, easy-rsa).
	Exportable Custody = "exportable"
	// Shared: every signer reaches one key (a network HSM); it makes its next CA itself.
	Shared Custody = "shared"
	// Remote: the CA is a service every signer calls; it may move to another CA.
	Remote Custody = "remote"
)

// ca is a CA certificate and its key.
type ca struct {
	cert *x509.Certificate
	pem  string
	key  crypto.Signer
}

// caHolder is where a CA lives: one signer's own, or the one every signer reaches.
type caHolder struct{ current *ca }

// SignerFault is a way a signer's answer differs from what the leader asked for.
type SignerFault int

// The faults a sloppy or hostile signer commits (none, then one each).
const (
	FaultNone       SignerFault = iota
	FaultAddName                // adds a name another unit holds
	FaultBothUsages             // server and client usages whatever the profile
	FaultCopyOrg                // copies an organisation into the subject
	FaultIsCA                   // a CA certificate
	FaultOtherKey               // certifies another key than the CSR's
	FaultLongLife               // ten times the validity asked for
	faultCount
)

func (f SignerFault) String() string {
	return [...]string{"none", "add-name", "both-usages", "copy-org", "is-ca", "other-key", "long-life"}[f]
}

// signer is one unit's signer backend.
type signer struct {
	w        *world
	custody  Custody
	holder   *caHolder // its own (exportable) or the world's (shared, remote)
	signsCRL bool
}

func (s *signer) terms() protocol.SignerTerms {
	switch s.custody {
	case Shared:
		return protocol.SignerTerms{Custody: sdk.CustodyShared, Generate: true}
	case Remote:
		return protocol.SignerTerms{Custody: sdk.CustodyRemote}
	}
	return protocol.SignerTerms{Custody: sdk.CustodyExportable, Exports: true, Imports: true}
}

// bundle is the signer's CA, made on first use.
func (s *signer) bundle() string {
	if s.holder.current == nil {
		s.holder.current = s.w.newCA()
	}
	return s.holder.current.pem
}

// newCA makes a CA valid from now for the world's CA lifetime, with a serial of its own.
func (w *world) newCA() *ca {
	key := w.newKey()
	tmpl := &x509.Certificate{SerialNumber: w.nextSerial(), Subject: pkix.Name{CommonName: fmt.Sprintf("sim CA %d", w.cas)},
		NotBefore: w.now.Add(-certutil.Backdate), NotAfter: w.now.Add(w.p.CALife),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	w.cas++
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, pem: string(certutil.CertPEM(der)), key: key}
}

func (w *world) newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return key
}

// nextSerial is the next certificate serial: distinct, deterministic for a schedule, of
// a size real signers give.
func (w *world) nextSerial() *big.Int {
	w.serials++
	x := splitmix(w.seed ^ uint64(w.serials)<<20)
	return new(big.Int).SetUint64(x | 1<<63)
}

// sign issues a certificate for a CSR as a signer would: the subject rebuilt from the
// CSR's common name, its SANs, the profile's usages; fault, if any, spoils it.
func (s *signer) sign(csrPEM, profile string, validity time.Duration, fault SignerFault, names []string) (string, error) {
	c := s.holder.current
	if c == nil {
		return "", errors.New("the signer has no CA")
	}
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil {
		return "", sdk.Errorf(sdk.CodeInvalidArgument, "csr", "not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", sdk.Errorf(sdk.CodeInvalidArgument, "csr", "%v", err)
	}
	usages, err := certutil.UsagesFor(sdk.Profile(profile), csr.PublicKey)
	if err != nil {
		return "", err
	}
	now := s.w.now
	tmpl := &x509.Certificate{SerialNumber: s.w.nextSerial(), Subject: pkix.Name{CommonName: csr.Subject.CommonName},
		DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses, URIs: csr.URIs,
		NotBefore: now.Add(-certutil.Backdate), NotAfter: now.Add(validity),
		KeyUsage: usages.Key, ExtKeyUsage: usages.Extended, BasicConstraintsValid: true}
	pub := csr.PublicKey
	switch fault {
	case FaultAddName:
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
	case FaultBothUsages:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		if profile == "peer" {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
	case FaultCopyOrg:
		tmpl.Subject.Organization = []string{"copied"}
	case FaultIsCA:
		tmpl.IsCA, tmpl.KeyUsage = true, tmpl.KeyUsage|x509.KeyUsageCertSign
	case FaultOtherKey:
		pub = s.w.newKey().Public()
	case FaultLongLife:
		tmpl.NotAfter = now.Add(10 * validity)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return "", err
	}
	return string(certutil.CertPEM(der)), nil
}

// signCRL signs a CRL of revoked with the signer's CA.
func (s *signer) signCRL(act protocol.SignCRL) (string, error) {
	c := s.holder.current
	if c == nil {
		return "", errors.New("the signer has no CA")
	}
	tmpl := &x509.RevocationList{Number: act.Number, ThisUpdate: act.Now.Add(-certutil.Backdate), NextUpdate: act.Now.Add(protocol.CRLLifetime)}
	for _, r := range act.Revoked {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			continue
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.Departed.UTC()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, c.cert, c.key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})), nil
}

// keyPEM is a CA key as the sealed copy holds it.
func keyPEM(key crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// importCA makes certPEM and keyPEM the signer's CA (ca_import).
func (s *signer) importCA(certPEM string, key []byte) error {
	certs, err := certutil.ParseCertificates([]byte(certPEM))
	if err != nil {
		return err
	}
	k, err := certutil.ParsePrivateKeyPEM(key)
	if err != nil {
		return err
	}
	if !certutil.SamePublicKey(certs[0].PublicKey, k.Public()) {
		return errors.New("the key is not the CA's")
	}
	s.holder.current = &ca{cert: certs[0], pem: string(certutil.CertPEM(certs[0].Raw)), key: k}
	return nil
}

// splitmix is SplitMix64's mixing function: one well-spread number from another.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
