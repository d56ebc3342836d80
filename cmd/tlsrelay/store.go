package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/sdk"
)

type storeFlags struct {
	cert, key, chain, config, backend string
}

func newStoreCommand() *cobra.Command {
	var f storeFlags
	cmd := &cobra.Command{
		Use:   "store NAME --cert FILE --key FILE [--chain FILE]",
		Short: "Store a certificate, its key and chain through the secrets backend; print its reference",
		Long: `store checks a certificate and its key (they must match; an intermediates file is
optional) and stores them under NAME with the deployment's secrets backend, printing the
reference that fetch, a secrets: entry or ca.ref take. The barbican backend stores one
PKCS#12 secret without a password by default (what Octavia stores and reads), or with
its store_format: container a certificate container over one secret a part; a failed
store leaves nothing behind. Exit statuses as fetch's.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runStore(cmd, f, args[0]) },
	}
	cmd.Flags().StringVar(&f.cert, "cert", "", "the certificate, PEM (required)")
	cmd.Flags().StringVar(&f.key, "key", "", "its private key, PEM (required; never printed or logged)")
	cmd.Flags().StringVar(&f.chain, "chain", "", "intermediate certificates, PEM")
	cmd.Flags().StringVar(&f.config, "config", "", "deployment YAML with the secrets backend's config")
	cmd.Flags().StringVar(&f.backend, "backend", "", "store with this backend instead of roles.secrets")
	cmd.MarkFlagRequired("cert")
	cmd.MarkFlagRequired("key")
	return cmd
}

func runStore(cmd *cobra.Command, f storeFlags, name string) error {
	var secret sdk.Secret
	for _, in := range []struct {
		flag, file string
		into       *[]byte
	}{{"--cert", f.cert, &secret.CertificatePEM}, {"--key", f.key, (*[]byte)(&secret.Key)}, {"--chain", f.chain, &secret.IntermediatesPEM}} {
		if in.file == "" {
			continue
		}
		b, err := os.ReadFile(in.file)
		if err != nil {
			return fmt.Errorf("%s: %w", in.flag, err)
		}
		*in.into = b
	}
	b, closeHost, err := secretsBackend(cmd, f.config, f.backend)
	if err != nil {
		return backendFailure(cmd, err)
	}
	defer closeHost()
	ref, err := b.StoreSecret(cmd.Context(), name, secret)
	if err != nil {
		return secretFailure(cmd, "store", err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), ref)
	return nil
}
