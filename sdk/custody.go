package sdk

import (
	"context"
	"time"
)

// How a signer keeps its CA decides how a group keeps one CA across leaders and how it
// rotates. A signer states it with capabilities in Info; Info.Custody reads them.
const (
	// CapCAShared: every leader's signer reaches the same CA key (a network HSM, a token
	// shared between hosts), so a new leader signs with the group's CA as it is.
	CapCAShared Capability = "ca_shared"
	// CapCARemote: the CA lives in a service the signer calls; the signer reports the
	// CA the service signs with, and the group follows it when it changes.
	CapCARemote Capability = "ca_remote"
	// CapCAGenerate: the signer implements CAGenerator, making its next CA itself.
	CapCAGenerate Capability = "ca_generate"
)

// Custody is how a signer keeps its CA.
type Custody string

// The custodies, from what a signer claims.
const (
	// CustodyLocal: the key stays with this signer and cannot move; a leader on another
	// host has another CA.
	CustodyLocal Custody = "local"
	// CustodyExportable: ca_export and ca_import; the host seals the key into the relation
	// (ca_seal) and the next leader imports it.
	CustodyExportable Custody = "exportable"
	// CustodyShared: CapCAShared.
	CustodyShared Custody = "shared"
	// CustodyRemote: CapCARemote.
	CustodyRemote Custody = "remote"
)

// Custody says how the backend keeps its CA: remote and shared as claimed, else
// exportable when it both exports and imports, else local.
func (i Info) Custody() Custody {
	switch {
	case i.Has(CapCARemote):
		return CustodyRemote
	case i.Has(CapCAShared):
		return CustodyShared
	case i.Has(CapCAExport) && i.Has(CapCAImport):
		return CustodyExportable
	}
	return CustodyLocal
}

// GenerateCARequest asks a signer for its next CA. An empty CommonName and a zero
// Validity mean: like the current CA.
type GenerateCARequest struct {
	CommonName string
	Validity   time.Duration
}

// CAGenerator is the optional part of the contract behind CapCAGenerate: the signer
// makes its next CA itself, the key born where it keeps keys (a token) and never leaving
// it, makes it the signing CA, and returns its new CA bundle. The host calls it to
// rotate the group's CA when the signer cannot import one. The CA it replaces may stay
// where the signer keeps keys; the host no longer signs with it.
type CAGenerator interface {
	GenerateCA(ctx context.Context, req GenerateCARequest) (CA, error)
}

// GenerateCA has b make its next CA if it is a CAGenerator, and answers Unimplemented
// if not.
func GenerateCA(ctx context.Context, b Backend, req GenerateCARequest) (CA, error) {
	if g, ok := b.(CAGenerator); ok {
		return g.GenerateCA(ctx, req)
	}
	return CA{}, Errorf(CodeUnimplemented, "", "this backend does not generate CAs")
}
