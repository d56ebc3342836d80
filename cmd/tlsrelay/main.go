// Command tlsrelay gives a group of peer units mutual-TLS identities through backend
// plugins. `tlsrelay up` runs a whole group on this machine and proves the result.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/internal/buildinfo"
)

// exitError carries a specific exit status out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(exit.code)
		}
		fmt.Fprintln(os.Stderr, "tlsrelay:", err)
		if fault.IsPermanent(err) {
			os.Exit(fault.ExitPermanent) // documented: trying again cannot mend it
		}
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "tlsrelay",
		Short:         "Mutual-TLS identities for a group of peer units, through backend plugins",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("log-level", "warn", "log level: trace, debug, info, warn, error")
	root.PersistentFlags().String("log-format", "text", "log format: text, or json (one object per line)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		level, _ := cmd.Flags().GetString("log-level")
		if hclog.LevelFromString(level) == hclog.NoLevel {
			return fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", level)
		}
		if format, _ := cmd.Flags().GetString("log-format"); format != "text" && format != "json" {
			return fmt.Errorf("--log-format %q: want text or json", format)
		}
		return nil
	}
	root.AddCommand(newUpCommand(), newAgentCommand(), newStatusCommand(), newRevokeCommand(), newCACommand(), newEtcdCommand(), newSignCommand(), newFetchCommand(), newStoreCommand(), newPluginCommand(), newPluginsCommand(), newAuditCommand(), newVersionCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the tlsrelay version, the revision it was built from, and when",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "tlsrelay %s, backend protocol %d\n", buildinfo.Read(), sdkProtocolVersion)
		},
	}
}
