package protocol

import (
	"maps"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// LeaderMemory is what a leader has learned by acting and cannot read from the relation:
// its signer's CA, whether the signer signs CRLs, the CA that ca.ref names, and how the
// signer fared with each CSR. It travels in the View, and only Step changes it, from the
// results of the actions the agent carried out (as raft's Step takes a node's messages):
// the agent holds the value and decides nothing with it.
type LeaderMemory struct {
	// SignerCA is the signer's CA bundle (PEM, its signing CA first); "" until the leader
	// has asked (LoadSignerCA).
	SignerCA string
	// SignsCRL: the signer claims the crl capability and has not answered a SignCRL
	// with Unimplemented.
	SignsCRL bool
	// Signer is what the signer claims of its CA (SignerCALoaded), less what it has
	// answered Unimplemented since (SignerLacks).
	Signer SignerTerms
	// LoadedAt is when the signer's CA was loaded: a remote CA is loaded again
	// RemoteCARecheck later, to follow it when its service moves to another CA.
	LoadedAt time.Time
	// ReferencedCA is the certificate ca.ref names (PEM, no key); "" until fetched
	// (LoadReferencedCA).
	ReferencedCA string
	// CAChain is what the leader knows of the certificates above the group's CA
	// (ReferencedCALoaded: the intermediates stored with the ca.ref CA), which it
	// publishes under KeyCAChain.
	CAChain string
	// ImportedRef is the fingerprint of the ca.ref CA the leader imported into its signer,
	// so that a signer that keeps another CA after the import is named, not fed the CA
	// again at every decision.
	ImportedRef string
	// SignFailures are the signer's failures per CSR digest, until the CSR is answered.
	SignFailures map[string]SignFailure
	// LeadRecorded: this leadership is on the unit's audit trail (View.Audited).
	LeadRecorded bool
	// Unpublished are certificates the signer returned whose publication failed (a write
	// the store did not take), by CSR digest: the next decision publishes the same one
	// (SignCSR.Signed) rather than have the CSR signed again, so that no certificate
	// exists that its unit was never given.
	Unpublished map[string]Unpublished
}

// Unpublished is a certificate signed for a CSR and not yet published.
type Unpublished struct {
	ChainPEM string
	// Recorded: its `signed` record is on the audit trail already.
	Recorded bool
}

// SignFailure is the signer's record with one CSR.
type SignFailure struct {
	// Internal counts the failures with Internal (or an unclassified error).
	Internal int
	// Refused: the signer answered the CSR for good (InvalidArgument, or Internal
	// SignAttempts times); Reason is its last word.
	Refused bool
	Reason  string
}

// SignAttempts is how often a CSR the signer fails on with Internal is tried before it
// is rejected: such a failure may pass, but one that repeats is the CSR's.
const SignAttempts = 3

// Result is the outcome of an action, fed back to the leader's memory by Step.
type Result interface{ result() }

// SignerTerms is what a signer claims of its CA: its custody, and which of the moves
// of a CA it makes.
type SignerTerms struct {
	Custody  sdk.Custody
	Exports  bool // ca_export: SealCA
	Imports  bool // ca_import: NewSignerCA made by the host, ImportSealedCA, a cancel
	Generate bool // ca_generate: NewSignerCA made by the signer itself
}

// TermsOf reads a signer's terms from its Info.
func TermsOf(info sdk.Info) SignerTerms {
	return SignerTerms{Custody: info.Custody(), Exports: info.Has(sdk.CapCAExport), Imports: info.Has(sdk.CapCAImport),
		Generate: info.Has(sdk.CapCAGenerate)}
}

// SignerCALoaded: LoadSignerCA read the signer's CA bundle and capabilities, at At.
type SignerCALoaded struct {
	BundlePEM string
	SignsCRL  bool
	Signer    SignerTerms
	At        time.Time
}

// SignerLacks: the signer answered Unimplemented to a move of its CA it claimed
// (sdk.CapCAExport, CapCAImport or CapCAGenerate): the leader plans it no more.
type SignerLacks struct{ Capability sdk.Capability }

// ReferencedCALoaded: LoadReferencedCA fetched the certificate of the CA ca.ref names,
// and the intermediates stored with it (ChainPEM, its issuer first; the root may end it).
type ReferencedCALoaded struct{ CertPEM, ChainPEM string }

// SignerCAChanged: the signer now holds another CA (NewSignerCA, ImportSealedCA,
// ImportReferencedCA), so its CA is loaded again; Imported is the fingerprint of the
// ca.ref CA imported, if that was the change (the referenced CA is then not fetched
// again).
type SignerCAChanged struct{ Imported string }

// CSRAnswered: the signer signed the CSR with this digest, or the leader published its
// rejection: its record is done.
type CSRAnswered struct{ Digest string }

// CertificateUnpublished: the certificate signed for the CSR with this digest was not
// published (the store refused or did not answer the write).
type CertificateUnpublished struct {
	Digest string
	Unpublished
}

// CertificatePublished: the certificate signed for the CSR with this digest is in leader
// data, or will never be (refused on a second look): it is not kept any more.
type CertificatePublished struct{ Digest string }

// CSRSignFailed: the signer failed on the CSR with this digest.
type CSRSignFailed struct {
	Digest string
	Code   sdk.Code
	Reason string
}

// CRLUnsupported: the signer claimed the crl capability but answered SignCRL with
// Unimplemented; the leader publishes no CRL and goes on signing.
type CRLUnsupported struct{}

// LeadRecorded: the audit trail holds this unit's gain of the lead (RecordLead).
type LeadRecorded struct{}

// LeadershipLost: the unit does not lead; a later leadership starts afresh (the signer
// or its CA may have changed meanwhile).
type LeadershipLost struct{}

func (SignerCALoaded) result()         {}
func (ReferencedCALoaded) result()     {}
func (SignerCAChanged) result()        {}
func (CSRAnswered) result()            {}
func (CertificateUnpublished) result() {}
func (CertificatePublished) result()   {}
func (CSRSignFailed) result()          {}
func (CRLUnsupported) result()         {}
func (LeadershipLost) result()         {}
func (LeadRecorded) result()           {}
func (SignerLacks) result()            {}

// Step returns the memory after a result. It never changes m: the maps it holds are
// copied before a change, so a View that carries m stays as it was.
func (m LeaderMemory) Step(r Result) LeaderMemory {
	switch r := r.(type) {
	case SignerCALoaded:
		m.SignerCA, m.SignsCRL, m.Signer, m.LoadedAt = r.BundlePEM, r.SignsCRL, r.Signer, r.At
	case SignerLacks:
		switch r.Capability {
		case sdk.CapCAExport:
			m.Signer.Exports = false
		case sdk.CapCAImport:
			m.Signer.Imports = false
		case sdk.CapCAGenerate:
			m.Signer.Generate = false
		}
	case ReferencedCALoaded:
		m.ReferencedCA, m.CAChain = r.CertPEM, r.ChainPEM
	case SignerCAChanged:
		m.SignerCA = ""
		if r.Imported != "" {
			m.ImportedRef = r.Imported // ReferencedCA is still what ca.ref names
		} else {
			m.ReferencedCA = ""
		}
	case CSRAnswered:
		if _, ok := m.SignFailures[r.Digest]; ok {
			m.SignFailures = maps.Clone(m.SignFailures)
			delete(m.SignFailures, r.Digest)
		}
	case CSRSignFailed:
		f := m.SignFailures[r.Digest]
		switch r.Code {
		case sdk.CodeInvalidArgument:
			f.Refused = true
		case sdk.CodeInternal: // an unclassified error too (sdk.CodeOf)
			f.Internal++
			f.Refused = f.Internal >= SignAttempts
		default:
			return m // transient (the signer unavailable): retried, never held against the CSR
		}
		f.Reason = r.Reason
		m.SignFailures = maps.Clone(m.SignFailures)
		if m.SignFailures == nil {
			m.SignFailures = map[string]SignFailure{}
		}
		m.SignFailures[r.Digest] = f
	case CertificateUnpublished:
		m.Unpublished = maps.Clone(m.Unpublished)
		if m.Unpublished == nil {
			m.Unpublished = map[string]Unpublished{}
		}
		m.Unpublished[r.Digest] = r.Unpublished
	case CertificatePublished:
		if _, ok := m.Unpublished[r.Digest]; ok {
			m.Unpublished = maps.Clone(m.Unpublished)
			delete(m.Unpublished, r.Digest)
		}
	case CRLUnsupported:
		m.SignsCRL = false
	case LeadRecorded:
		m.LeadRecorded = true
	case LeadershipLost:
		return LeaderMemory{}
	}
	return m
}

// Refused says whether the signer has answered the CSR with this digest for good.
func (m LeaderMemory) Refused(digest string) bool { return m.SignFailures[digest].Refused }
