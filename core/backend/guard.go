package backend

import (
	"context"
	"errors"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// guarded is a running plugin's backend as the host hands it out. A call that overruns
// its caller's deadline kills the plugin: a plugin stuck in one call (a tool waiting on
// input, a lock never released) would stay stuck for every later call, so the next For
// starts a fresh process instead.
type guarded struct {
	sdk.Backend
	host *Host
	name string
	r    *running
}

func (g guarded) check(ctx context.Context, err error) error {
	g.r.used() // a call just ended: the plugin is not idle
	// gRPC may end the call on its own timer a moment before ctx's: the clock decides.
	deadline, ok := ctx.Deadline()
	if err != nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || ok && !time.Now().Before(deadline)) {
		g.host.kill(g.name, g.r, "a call overran its caller's deadline")
	}
	return err
}

func (g guarded) CreateCSR(ctx context.Context, req sdk.CSRRequest) (sdk.CSR, error) {
	out, err := g.Backend.CreateCSR(ctx, req)
	return out, g.check(ctx, err)
}

func (g guarded) SignCSR(ctx context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	out, err := g.Backend.SignCSR(ctx, req)
	return out, g.check(ctx, err)
}

func (g guarded) CA(ctx context.Context) (sdk.CA, error) {
	out, err := g.Backend.CA(ctx)
	return out, g.check(ctx, err)
}

func (g guarded) FetchSecret(ctx context.Context, ref string) (sdk.Secret, error) {
	out, err := g.Backend.FetchSecret(ctx, ref)
	return out, g.check(ctx, err)
}

func (g guarded) StoreSecret(ctx context.Context, name string, s sdk.Secret) (string, error) {
	out, err := g.Backend.StoreSecret(ctx, name, s)
	return out, g.check(ctx, err)
}

func (g guarded) DeleteSecret(ctx context.Context, ref string) error {
	return g.check(ctx, g.Backend.DeleteSecret(ctx, ref))
}

func (g guarded) ExportCA(ctx context.Context) (sdk.CAKeyPair, error) {
	out, err := g.Backend.ExportCA(ctx)
	return out, g.check(ctx, err)
}

func (g guarded) ImportCA(ctx context.Context, ca sdk.CAKeyPair) error {
	return g.check(ctx, g.Backend.ImportCA(ctx, ca))
}

// SignCRL implements sdk.CRLSigner for the plugin behind g.
func (g guarded) SignCRL(ctx context.Context, req sdk.CRLRequest) (sdk.CRL, error) {
	out, err := sdk.SignCRL(ctx, g.Backend, req)
	return out, g.check(ctx, err)
}

// SignCSRs implements sdk.BatchSigner for the plugin behind g (one SignCSR per request
// for a plugin without the capability).
func (g guarded) SignCSRs(ctx context.Context, reqs []sdk.SignRequest) ([]sdk.SignResult, error) {
	out, err := sdk.SignCSRs(ctx, g.Backend, reqs)
	return out, g.check(ctx, err)
}

// GenerateCA implements sdk.CAGenerator for the plugin behind g.
func (g guarded) GenerateCA(ctx context.Context, req sdk.GenerateCARequest) (sdk.CA, error) {
	out, err := sdk.GenerateCA(ctx, g.Backend, req)
	return out, g.check(ctx, err)
}
