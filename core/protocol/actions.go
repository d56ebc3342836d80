package protocol

import (
	"math/big"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// Action is one step the agent carries out. Unit actions touch the unit's own files and
// bag; leader actions touch leader data and the signer. This file is the whole catalogue.
type Action interface{ action() }

// CreateCSR: make a new key and a CSR for Request with the csr backend, keep the key as
// pending, and publish the CSR with Profile. ReuseKey: make the CSR from the installed
// key instead (key_rotation never). What the CSR asks for is decided here, from the
// unit's Want, so that every executor (the agent, the scale simulator) asks alike.
type CreateCSR struct {
	Reason   string
	ReuseKey bool
	Request  sdk.CSRRequest // the key, common name and SANs
	Profile  string
}

// PublishCSR: put the pending CSR (again) in the unit's bag, with the wanted profile.
type PublishCSR struct {
	CSRPEM  string
	Profile string
}

// InstallCertificate: write the certificate chain, promote the pending key, write the CA.
type InstallCertificate struct {
	ChainPEM string
	CAPEM    string
}

// InstallCA: rewrite the unit's CA file with the group's current bundle.
type InstallCA struct{ CAPEM string }

// LoadSignerCA (leader): ask the signer backend for its CA bundle, creating the CA on
// first use, so that the next decision can compare it with the published one.
type LoadSignerCA struct{}

// PublishCA (leader): set the group's CA bundle in leader data.
type PublishCA struct{ BundlePEM string }

// NewSignerCA (leader): make a new CA named CommonName, valid for Lifetime (the signing
// CA's own, so a rotation keeps the group's CA as it was configured), and import it into
// the signer, or with Generate have the signer make it itself (sdk.GenerateCA), then load
// the signer's CA again; the next decision starts the rotation to it.
type NewSignerCA struct {
	Reason     string
	Generate   bool
	CommonName string
	Lifetime   time.Duration
}

// RecordLead (leader): put the unit's gain of the lead on its audit trail, then
// LeadRecorded. Nothing else is done while it leads until that is done.
type RecordLead struct{}

// SetLeaderData (leader): write these leader-data keys (an empty value deletes).
type SetLeaderData struct{ KV map[string]string }

// SealCA (leader): export the signer's CA, seal its key with the ca_seal key and publish
// it as KeyCASealed, so the next leader can sign with the same CA.
type SealCA struct{}

// ImportSealedCA (leader): open the sealed CA key of the group's CA and import the CA
// into the signer, then load the signer's CA again.
type ImportSealedCA struct {
	CACertPEM string // the group's signing CA
	Sealed    string // the KeyCASealed value
}

// LoadReferencedCA (leader): fetch the certificate of the CA that ca.ref names from the
// secrets backend (its key stays there), so the next decision can compare it with the
// signer's.
type LoadReferencedCA struct{ Ref string }

// ImportReferencedCA (leader): fetch the CA that ca.ref names, key included, and import
// it into the signer; CASHA256 is the fingerprint of the certificate loaded before.
type ImportReferencedCA struct{ Ref, CASHA256 string }

// SignCSR (leader): have the signer sign a unit's CSR for Validity, check its answer
// (IssueCheck) and publish the chain, guarded by the CSR, with Earlier at IssuedKey: the
// certificates issued to the unit before, the one the new chain replaces included, so
// that none is forgotten. An answer that fails the check is not published: it is the
// signer's failure with the CSR (CSRSignFailed, Internal).
type SignCSR struct {
	Unit     string
	CSRPEM   string
	Profile  string
	Validity time.Duration
	Earlier  string
	// CA is the CA bundle the certificate must chain to, its signing CA first: the one
	// this decision publishes, which units verify it with (IssueCheck).
	CA string
	// Signed is a certificate signed for this CSR before, whose publication failed
	// (LeaderMemory.Unpublished): publish it, if it still passes IssueCheck, and do not
	// have the CSR signed again.
	Signed Unpublished
}

// RejectCSR (leader): publish the refusal of a unit's CSR, with the reason, guarded by
// the CSR it answers.
type RejectCSR struct {
	Unit      string
	CSRPEM    string
	Rejection Rejection
	// Repeat: a refusal of the unit is on the audit trail from less than RejectionRetry
	// ago (Rejection.Recorded). It is published and counted all the same, but not
	// recorded: a unit that floods refused CSRs cannot rotate the trail's signings away.
	Repeat bool
}

// WithdrawCSR (unit): delete the answered CSR from the unit's bag. A unit asks the
// leader for nothing while it holds its certificate, so the bag put back after a lost
// lease, or read by a new leader, asks for no certificate the unit would not install.
type WithdrawCSR struct{}

// ForgetUnit (leader): delete a departed unit's certificate, rejection and issued record
// from leader data (its certificates are revoked, or it had none).
type ForgetUnit struct{ Unit string }

// SignCRL (leader): have the signer sign a CRL of Revoked, numbered Number, valid from
// Now for CRLLifetime, and publish it under KeyCRL.
type SignCRL struct {
	Revoked []Revocation
	Number  *big.Int
	Now     time.Time
	// CA is the group's CA bundle, its signing CA first: the CRL must be its
	// (IssueCheck.CheckCRL).
	CA string
}

// InstallCRL (unit): write the group's CRL as ca.crl.
type InstallCRL struct{ PEM string }

// InstallChain (unit): write tls.crt again, the installed certificate with the
// intermediates the group published since it was installed.
type InstallChain struct{ ChainPEM string }

func (CreateCSR) action()          {}
func (NewSignerCA) action()        {}
func (RecordLead) action()         {}
func (SetLeaderData) action()      {}
func (PublishCSR) action()         {}
func (InstallCertificate) action() {}
func (InstallCA) action()          {}
func (LoadSignerCA) action()       {}
func (PublishCA) action()          {}
func (SignCSR) action()            {}
func (SealCA) action()             {}
func (ImportSealedCA) action()     {}
func (RejectCSR) action()          {}
func (ForgetUnit) action()         {}
func (WithdrawCSR) action()        {}
func (LoadReferencedCA) action()   {}
func (ImportReferencedCA) action() {}
func (SignCRL) action()            {}
func (InstallCRL) action()         {}
func (InstallChain) action()       {}
