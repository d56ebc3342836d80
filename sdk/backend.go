// Package sdk is the stable contract between tlsrelay and its backend plugins.
//
// A backend implements Backend and calls Serve from its main function; the tlsrelay host
// launches it as a child process through HashiCorp go-plugin and talks to it over gRPC
// (sdk/proto/backend.proto). Embed Unimplemented to answer Unimplemented for every
// capability the backend does not claim in Info.
package sdk

import (
	"context"
	"math/big"
	"time"
)

// Capability names one optional part of the contract a backend implements.
type Capability string

// The capabilities of protocol version 1.
const (
	CapCreateCSR    Capability = "create_csr"
	CapSignCSR      Capability = "sign_csr"
	CapCA           Capability = "ca"
	CapFetchSecret  Capability = "fetch_secret"
	CapStoreSecret  Capability = "store_secret"
	CapDeleteSecret Capability = "delete_secret"
	// CapCAExport and CapCAImport move a CA between signers: a new leader on another host
	// imports the CA its predecessor exported (sealed in leader data), so the group keeps
	// one CA across leader changes.
	CapCAExport Capability = "ca_export"
	CapCAImport Capability = "ca_import"
	// CapCRL: the backend implements CRLSigner, signing revocation lists with its CA.
	CapCRL Capability = "crl"
)

// Profile is the kind of certificate a CSR asks for.
type Profile string

// The profiles every signer understands.
const (
	ProfileServer Profile = "server" // TLS server authentication
	ProfileClient Profile = "client" // TLS client authentication
	ProfilePeer   Profile = "peer"   // both: a peer that dials and is dialled
)

// Profiles lists the valid profiles, in the order documentation shows them.
var Profiles = []Profile{ProfileServer, ProfileClient, ProfilePeer}

// Valid reports whether p is one of Profiles.
func (p Profile) Valid() bool {
	for _, known := range Profiles {
		if p == known {
			return true
		}
	}
	return false
}

// Info describes a backend.
type Info struct {
	Name         string
	Version      string
	Capabilities []Capability
}

// Has reports whether the backend claims capability c.
func (i Info) Has(c Capability) bool {
	for _, have := range i.Capabilities {
		if have == c {
			return true
		}
	}
	return false
}

// ConfigureRequest carries the backend's section of the YAML and a directory for its state.
type ConfigureRequest struct {
	// ConfigJSON is the backend's `config:` section, encoded as JSON. DecodeConfig
	// decodes it strictly, so a misspelt key is an error that names it.
	ConfigJSON []byte
	// StateDir is where the backend may persist state (a CA, an index). The host creates it.
	StateDir string
	// Validity is the certificate lifetime the group asks for (certificate.validity);
	// zero when the host does not say. A signer that signs for a fixed lifetime (a
	// remote CA's) refuses a mismatch here with FailedPrecondition, rather than sign
	// certificates for another lifetime than asked.
	Validity time.Duration
}

// KeySpec asks for a private key.
type KeySpec struct {
	Algorithm string // "ecdsa" or "rsa"
	Size      int    // 256 or 384 for ecdsa; 2048 or more for rsa
}

// CSRRequest asks for a key and a certificate signing request.
type CSRRequest struct {
	Key        KeySpec
	CommonName string
	SANs       []string // DNS names and IP addresses as text
}

// CSR is a certificate signing request with the private key that signed it.
type CSR struct {
	CSRPEM []byte
	Key    PrivateKey
}

// SignRequest asks a signer for a certificate.
type SignRequest struct {
	CSRPEM   []byte
	Profile  Profile
	Validity time.Duration // zero: the backend's default
	Unit     string        // the unit the CSR belongs to, named in errors
}

// Certificate is a signed certificate followed by any intermediates, PEM.
type Certificate struct {
	ChainPEM []byte
}

// CA is the signer's CA bundle, PEM: the signing CA first, then any still-trusted CAs.
type CA struct {
	BundlePEM []byte
}

// Secret is certificate material held by a secrets backend.
type Secret struct {
	CertificatePEM   []byte
	Key              PrivateKey
	IntermediatesPEM []byte
	Passphrase       PrivateKey
}

// Backend is what a plugin implements. Every method returns errors built with
// Errorf and a Code (sdk.Errorf(sdk.CodeNotFound, ref, ...), CodeInvalidArgument, ...) so
// that the host can tell them apart; any other error reaches the host as Internal.
type Backend interface {
	Info(ctx context.Context) (Info, error)
	Configure(ctx context.Context, req ConfigureRequest) error
	CreateCSR(ctx context.Context, req CSRRequest) (CSR, error)
	SignCSR(ctx context.Context, req SignRequest) (Certificate, error)
	CA(ctx context.Context) (CA, error)
	FetchSecret(ctx context.Context, ref string) (Secret, error)
	StoreSecret(ctx context.Context, name string, s Secret) (ref string, err error)
	DeleteSecret(ctx context.Context, ref string) error
	ExportCA(ctx context.Context) (CAKeyPair, error)
	ImportCA(ctx context.Context, ca CAKeyPair) error
}

// CRLRequest asks a signer for a certificate revocation list. The CRL returned lists
// exactly Revoked and carries Number, ThisUpdate and NextUpdate as asked (the sdk's
// kit checks this): a leader publishes no other, and counts it as the signer's failure.
type CRLRequest struct {
	Revoked    []RevokedCertificate
	ThisUpdate time.Time
	NextUpdate time.Time
	Number     *big.Int // the CRL number; a later list has a larger one
}

// RevokedCertificate is one entry of a CRL.
type RevokedCertificate struct {
	Serial    *big.Int
	RevokedAt time.Time
}

// CRL is a certificate revocation list, PEM ("X509 CRL").
type CRL struct {
	PEM []byte
}

// CRLSigner is the optional part of the contract behind CapCRL. It is an interface of
// its own, not a method of Backend, so that backends written before it still build;
// SignCRL calls it when a backend has it.
type CRLSigner interface {
	SignCRL(ctx context.Context, req CRLRequest) (CRL, error)
}

// SignCRL has b sign a CRL if it is a CRLSigner, and answers Unimplemented if not.
func SignCRL(ctx context.Context, b Backend, req CRLRequest) (CRL, error) {
	if s, ok := b.(CRLSigner); ok {
		return s.SignCRL(ctx, req)
	}
	return CRL{}, Errorf(CodeUnimplemented, "", "this backend does not sign CRLs")
}

// CAKeyPair is a signing CA: its certificate and its private key, PEM.
type CAKeyPair struct {
	CertPEM []byte
	Key     PrivateKey
}

// Unimplemented answers Unimplemented for every capability. Embed it in a backend and
// override what the backend does.
type Unimplemented struct{}

func (Unimplemented) CreateCSR(context.Context, CSRRequest) (CSR, error) {
	return CSR{}, Errorf(CodeUnimplemented, "", "this backend does not create CSRs")
}

func (Unimplemented) SignCSR(context.Context, SignRequest) (Certificate, error) {
	return Certificate{}, Errorf(CodeUnimplemented, "", "this backend does not sign CSRs")
}

func (Unimplemented) CA(context.Context) (CA, error) {
	return CA{}, Errorf(CodeUnimplemented, "", "this backend holds no CA")
}

func (Unimplemented) FetchSecret(_ context.Context, ref string) (Secret, error) {
	return Secret{}, Errorf(CodeUnimplemented, ref, "this backend does not fetch secrets")
}

func (Unimplemented) StoreSecret(_ context.Context, name string, _ Secret) (string, error) {
	return "", Errorf(CodeUnimplemented, name, "this backend does not store secrets")
}

func (Unimplemented) DeleteSecret(_ context.Context, ref string) error {
	return Errorf(CodeUnimplemented, ref, "this backend does not delete secrets")
}

func (Unimplemented) ExportCA(context.Context) (CAKeyPair, error) {
	return CAKeyPair{}, Errorf(CodeUnimplemented, "", "this backend does not export its CA")
}

func (Unimplemented) ImportCA(context.Context, CAKeyPair) error {
	return Errorf(CodeUnimplemented, "", "this backend does not import a CA")
}
