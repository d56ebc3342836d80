package agent

import (
	"context"
	"fmt"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// createCSR makes the key and CSR act asks for with the csr backend, keeps the key as
// pending and publishes the CSR.
func (a *Agent) createCSR(ctx context.Context, act protocol.CreateCSR) error {
	b, err := a.opts.Backends.For(ctx, config.RoleCSR)
	if err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	csr, err := b.CreateCSR(ctx, act.Request)
	if err != nil {
		return fmt.Errorf("%s: create CSR (%s): %w", a.unit, act.Reason, err)
	}
	if err := a.files.savePending(csr.Key, csr.CSRPEM); err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	a.log.Info("created CSR", "reason", act.Reason)
	return a.publishCSR(ctx, string(csr.CSRPEM), act.Profile)
}

// createCSRWithInstalledKey makes the renewal CSR act asks for from tls.key
// (key_rotation never).
func (a *Agent) createCSRWithInstalledKey(ctx context.Context, act protocol.CreateCSR) error {
	keyPEM, err := a.files.read(KeyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	key, err := certutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", a.unit, a.files.path(KeyFile), err)
	}
	csr, err := certutil.NewCSRForKey(act.Request, key)
	if err != nil {
		return fmt.Errorf("%s: create CSR (%s): %w", a.unit, act.Reason, err)
	}
	if err := a.files.savePending(keyPEM, csr.CSRPEM); err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	a.log.Info("created CSR with the installed key", "reason", act.Reason)
	return a.publishCSR(ctx, string(csr.CSRPEM), act.Profile)
}

func (a *Agent) publishCSR(ctx context.Context, csrPEM, profile string) error {
	err := a.opts.Member.SetUnitData(ctx, map[string]string{protocol.KeyCSR: csrPEM, protocol.KeyProfile: profile})
	if err != nil {
		return fmt.Errorf("%s: publish CSR: %w", a.unit, err)
	}
	return nil
}
