package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/plugins/builtin"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

type signFlags struct {
	csr, profile, config, stateDir, out, backend, unit string
	validity                                           time.Duration
	initCA                                             bool
}

func newSignCommand() *cobra.Command {
	var f signFlags
	cmd := &cobra.Command{
		Use:   "sign --csr FILE",
		Short: "Sign one CSR with the configured signer backend (an operator's tool)",
		Long: `sign hands one PEM CSR to the deployment's signer backend, as the leader would, and
writes the certificate chain to stdout (or --out). The CSR is checked against the
deployment's policy first, as the leader checks a unit's: with --unit NAME it must ask
for NAME's common name and only the SANs the policy allows NAME; without --unit it may
not ask for any unit's name. The signer uses its CA in the deployment's state
directory; for the group of a 'tlsrelay up --dir DIR', pass --state-dir DIR/state. A
state directory where the signer has no CA yet (a new or mistyped path) is refused,
and the CA the signer made there removed, unless --init-ca says to start one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSign(cmd, f) },
	}
	cmd.Flags().StringVar(&f.csr, "csr", "", "the CSR to sign, PEM (required)")
	cmd.Flags().StringVar(&f.profile, "profile", "", "server, client or peer (default: certificate.profile of the config)")
	cmd.Flags().DurationVar(&f.validity, "validity", 0, "certificate lifetime (default: certificate.validity of the config)")
	cmd.Flags().StringVar(&f.config, "config", "", "deployment YAML (default: the embedded configs/tlsrelay.yaml)")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "override state_dir: where the signer keeps its CA")
	cmd.Flags().StringVar(&f.out, "out", "", "write the chain here instead of stdout")
	cmd.Flags().StringVar(&f.backend, "backend", "", "sign with this backend instead of roles.signer")
	cmd.Flags().StringVar(&f.unit, "unit", "", "apply the policy's rules for this unit (its common name and SANs)")
	cmd.Flags().BoolVar(&f.initCA, "init-ca", false, "let the signer make a new CA where its state directory has none (default: refuse)")
	cmd.MarkFlagRequired("csr")
	return cmd
}

func runSign(cmd *cobra.Command, f signFlags) error {
	cfg, err := loadConfig(cmd, f.config)
	if err != nil {
		return err
	}
	if f.stateDir != "" {
		cfg.StateDir = f.stateDir
	}
	if f.backend != "" {
		if err := cfg.UseBackend(f.backend, builtin.Names()); err != nil {
			return fmt.Errorf("--backend %s: %w", f.backend, err)
		}
	}
	csrPEM, err := os.ReadFile(f.csr)
	if err != nil {
		return fmt.Errorf("--csr: %w", err)
	}
	req, err := signRequest(cfg, f, csrPEM)
	if err != nil {
		return err
	}
	// A signer state directory that does not exist yet gets a new CA: refused unless
	// asked for, since a mistyped --state-dir would otherwise sign with a stranger CA.
	signerDir := filepath.Join(cfg.StateDir, cfg.Roles.Signer)
	_, statErr := os.Stat(signerDir)
	fresh := errors.Is(statErr, fs.ErrNotExist)
	_, parentErr := os.Stat(cfg.StateDir)
	host, err := assemble.Plugins(cfg, assemble.PluginOptions{Log: newLogger(cmd)})
	if err != nil {
		return err
	}
	defer host.Close()
	ctx := cmd.Context()
	signer, err := host.For(ctx, config.RoleSigner)
	if err != nil {
		return err
	}
	ca, err := signer.CA(ctx)
	if err != nil {
		return fmt.Errorf("the signer %s's CA: %w", cfg.Roles.Signer, err)
	}
	if entries, _ := os.ReadDir(signerDir); fresh && len(entries) > 0 && !f.initCA {
		host.Close()
		os.RemoveAll(signerDir)
		if errors.Is(parentErr, fs.ErrNotExist) {
			os.Remove(cfg.StateDir) // made for this run, and empty again
		}
		return fmt.Errorf("state directory %s holds no CA of %s: the one it would have signed with is new (removed). "+
			"Give the state directory of the CA to sign with (for `up --dir DIR`: --state-dir DIR/state), or --init-ca to start a new CA there",
			cfg.StateDir, cfg.Roles.Signer)
	}
	if req.Validity, err = cappedValidity(cfg, req.Validity, ca.BundlePEM); err != nil {
		return err
	}
	chain, err := signer.SignCSR(ctx, req)
	if err != nil {
		return fmt.Errorf("sign %s with %s: %w", f.csr, cfg.Roles.Signer, err)
	}
	if err := writeChain(cmd, f.out, chain.ChainPEM); err != nil {
		return err
	}
	return summarize(cmd, cfg.Roles.Signer, chain.ChainPEM)
}

// signRequest checks the CSR against the policy locally, so that a bad file is named
// before any plugin starts.
func signRequest(cfg *config.Config, f signFlags, csrPEM []byte) (sdk.SignRequest, error) {
	if f.unit != "" {
		cfg = cfg.ForUnit(f.unit) // the profile of the unit's kind, if the group has kinds
	}
	profile := sdk.Profile(cfg.Certificate.Profile)
	if f.profile != "" {
		profile = sdk.Profile(f.profile)
	}
	if !profile.Valid() {
		return sdk.SignRequest{}, fmt.Errorf("--profile: %q is not one of server, client, peer", profile)
	}
	if f.unit != "" && !policy.IsUnitName(f.unit) {
		return sdk.SignRequest{}, fmt.Errorf("--unit: %q is not a unit name like db/0", f.unit)
	}
	pol, err := cfg.SigningPolicy()
	if err != nil {
		return sdk.SignRequest{}, err
	}
	csr, err := pol.Check(policy.Request{Unit: f.unit, CSRPEM: csrPEM, Profile: string(profile)})
	if err != nil {
		return sdk.SignRequest{}, fmt.Errorf("--csr %s: %w", f.csr, err)
	}
	validity := cfg.Certificate.Validity
	if f.validity != 0 {
		validity = f.validity
	}
	unit := f.unit
	if unit == "" {
		unit = csr.Subject.CommonName
	}
	return sdk.SignRequest{CSRPEM: csrPEM, Profile: profile, Validity: validity, Unit: unit}, nil
}

// cappedValidity is the validity to sign for (protocol.SigningValidity, as the leader
// signs); a request beyond policy.max_validity is an error here, where the operator
// asked for it.
func cappedValidity(cfg *config.Config, asked time.Duration, caPEM []byte) (time.Duration, error) {
	if max := cfg.Policy.MaxValidity; asked > max {
		return 0, fmt.Errorf("--validity: %s is longer than policy.max_validity %s", asked, max)
	}
	certs, err := certutil.ParseCertificates(caPEM)
	if err != nil {
		return 0, fmt.Errorf("the signer's CA: %w", err)
	}
	pol, err := cfg.SigningPolicy()
	if err != nil {
		return 0, err
	}
	return protocol.SigningValidity(pol, asked, certs[0], time.Now())
}

func writeChain(cmd *cobra.Command, out string, chain []byte) error {
	if out == "" {
		_, err := cmd.OutOrStdout().Write(chain)
		return err
	}
	return atomicfile.Write(out, chain, 0o644)
}

func summarize(cmd *cobra.Command, signer string, chain []byte) error {
	certs, err := certutil.ParseCertificates(chain)
	if err != nil {
		return fmt.Errorf("signer %s returned an unreadable chain: %w", signer, err)
	}
	c := certs[0]
	fmt.Fprintf(cmd.ErrOrStderr(), "signed %q by %q with %s: serial %s, not after %s, SANs %v %v\n",
		c.Subject.CommonName, c.Issuer.CommonName, signer, c.SerialNumber.Text(16),
		c.NotAfter.UTC().Format(time.RFC3339), c.DNSNames, c.IPAddresses)
	return nil
}
