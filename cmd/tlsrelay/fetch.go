package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/secrets"
	"github.com/tlsrelay/tlsrelay/plugins/builtin"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// Exit statuses of fetch, one per kind of failure, so that scripts can tell them apart.
var fetchExit = map[sdk.Code]int{
	sdk.CodeNotFound:           3,
	sdk.CodePermissionDenied:   4,
	sdk.CodeUnavailable:        5,
	sdk.CodeInvalidArgument:    6,
	sdk.CodeFailedPrecondition: exitBackendNotReady,
	sdk.CodeUnimplemented:      8,
}

// exitBackendNotReady: the secrets backend cannot start or is misconfigured.
const exitBackendNotReady = 7

type fetchFlags struct {
	out, config, backend string
}

func newFetchCommand() *cobra.Command {
	var f fetchFlags
	cmd := &cobra.Command{
		Use:   "fetch REF",
		Short: "Fetch one secret reference through the secrets backend and write it out",
		Long: `fetch resolves one reference (a Barbican certificate container or secret) with the
deployment's secrets backend, checks it (the key must match the certificate; an
encrypted key is decrypted with the container's passphrase), and with --out writes
DIR/tls.crt, DIR/tls.key (0600), DIR/chain.crt and DIR/bundle.pem (0600). It prints one
line: subject, not-after, files. On failure it prints the reason and exits with
3 not found, 4 permission denied, 5 unavailable, 6 invalid (a container without a
key, a key that does not match, a wrong passphrase, an unreadable payload),
7 the secrets backend cannot start or is misconfigured (the config, the plugin, its
auth section), 8 the backend cannot do this (it lacks the capability), 1 anything else.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runFetch(cmd, f, args[0]) },
	}
	cmd.Flags().StringVar(&f.out, "out", "", "directory to write the files to (default: write nothing)")
	cmd.Flags().StringVar(&f.config, "config", "", "deployment YAML with the secrets backend's config")
	cmd.Flags().StringVar(&f.backend, "backend", "", "fetch with this backend instead of roles.secrets")
	return cmd
}

func runFetch(cmd *cobra.Command, f fetchFlags, ref string) error {
	b, closeHost, err := secretsBackend(cmd, f.config, f.backend)
	if err != nil {
		return backendFailure(cmd, err)
	}
	defer closeHost()
	out := config.SecretOutput{Dir: f.out}
	r, err := secrets.Fetch(cmd.Context(), b, config.Secret{Name: "fetch", Ref: ref, Output: out})
	if err != nil {
		// The error names the reference, and which secret in it failed.
		return secretFailure(cmd, "fetch", err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), r.Summary())
	return nil
}

// secretsBackend starts the deployment's secrets backend (roles.secrets, or backendName)
// for one command; closeHost stops it.
func secretsBackend(cmd *cobra.Command, configFile, backendName string) (b sdk.Backend, closeHost func(), err error) {
	cfg, err := loadConfig(cmd, configFile)
	if err != nil {
		return nil, nil, err
	}
	if backendName != "" {
		cfg.Roles.Secrets = backendName
		if err := cfg.Validate(builtin.Names()); err != nil {
			return nil, nil, fmt.Errorf("--backend %s: %w", backendName, err)
		}
	}
	if cfg.Roles.Secrets == "" {
		return nil, nil, fmt.Errorf("no secrets backend: set roles.secrets in %s, or pass --backend", cfg.Source)
	}
	host, err := assemble.Plugins(cfg, assemble.PluginOptions{Log: newLogger(cmd)})
	if err != nil {
		return nil, nil, err
	}
	if b, err = host.For(cmd.Context(), config.RoleSecrets); err != nil {
		host.Close()
		return nil, nil, err
	}
	return b, host.Close, nil
}

// backendFailure prints why the secrets backend could not start and exits 7, or 8
// when the backend lacks what the command needs.
func backendFailure(cmd *cobra.Command, err error) error {
	if sdk.IsCode(err, sdk.CodeUnimplemented) {
		fmt.Fprintf(cmd.ErrOrStderr(), "tlsrelay: the secrets backend cannot do this: %v\n", err)
		return exitError{code: fetchExit[sdk.CodeUnimplemented]}
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "tlsrelay: the secrets backend cannot start or is misconfigured: %v\n", err)
	return exitError{code: exitBackendNotReady}
}

// secretFailure prints what failed and exits with the status for its kind (fetchExit).
func secretFailure(cmd *cobra.Command, what string, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "tlsrelay: %s failed: %v\n", what, unwrapName(err))
	if code, ok := fetchExit[sdk.CodeOf(err)]; ok {
		return exitError{code: code}
	}
	return exitError{code: 1}
}

// unwrapName drops the "secret fetch: " prefix core/secrets puts on errors: here the
// reference itself is the name.
func unwrapName(err error) error {
	var e *sdk.Error
	if errors.As(err, &e) {
		return e
	}
	return err
}
