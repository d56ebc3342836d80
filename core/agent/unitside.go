package agent

import (
	"context"
	"fmt"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

func (a *Agent) createCSR(ctx context.Context, reason string) error {
	b, err := a.opts.Backends.For(ctx, config.RoleCSR)
	if err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	key := a.opts.Certificate.Key
	csr, err := b.CreateCSR(ctx, sdk.CSRRequest{
		Key:        sdk.KeySpec{Algorithm: key.Algorithm, Size: key.Size},
		CommonName: a.want.CommonName,
		SANs:       a.want.SANs,
	})
	if err != nil {
		return fmt.Errorf("%s: create CSR (%s): %w", a.unit, reason, err)
	}
	if err := a.files.savePending(csr.Key, csr.CSRPEM); err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	a.log.Info("created CSR", "reason", reason)
	return a.publishCSR(ctx, string(csr.CSRPEM), a.want.Profile)
}

// createCSRWithInstalledKey makes the renewal CSR from tls.key (key_rotation never).
func (a *Agent) createCSRWithInstalledKey(ctx context.Context, reason string) error {
	keyPEM, err := a.files.read(KeyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	key, err := certutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", a.unit, a.files.path(KeyFile), err)
	}
	csr, err := certutil.NewCSRForKey(sdk.CSRRequest{CommonName: a.want.CommonName, SANs: a.want.SANs}, key)
	if err != nil {
		return fmt.Errorf("%s: create CSR (%s): %w", a.unit, reason, err)
	}
	if err := a.files.savePending(keyPEM, csr.CSRPEM); err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	a.log.Info("created CSR with the installed key", "reason", reason)
	return a.publishCSR(ctx, string(csr.CSRPEM), a.want.Profile)
}

func (a *Agent) publishCSR(ctx context.Context, csrPEM, profile string) error {
	err := a.opts.Member.SetUnitData(ctx, map[string]string{protocol.KeyCSR: csrPEM, protocol.KeyProfile: profile})
	if err != nil {
		return fmt.Errorf("%s: publish CSR: %w", a.unit, err)
	}
	return nil
}
