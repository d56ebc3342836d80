package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/internal/buildinfo"
	"github.com/tlsrelay/tlsrelay/plugins/builtin"
	"github.com/tlsrelay/tlsrelay/sdk"
)

const sdkProtocolVersion = sdk.ProtocolVersion

func newPluginCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Built-in backend plugins",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "serve NAME",
		Short: "Serve a built-in backend over go-plugin (run by the tlsrelay host, not by hand)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			newBackend, ok := builtin.Backends[args[0]]
			if !ok {
				return fmt.Errorf("no built-in backend is named %q (built in: %s)", args[0], strings.Join(builtin.Names(), ", "))
			}
			if os.Getenv(sdk.Handshake.MagicCookieKey) != sdk.Handshake.MagicCookieValue {
				return fmt.Errorf("plugin serve %s: this is run by the tlsrelay host as a plugin, not by hand", args[0])
			}
			builtin.SetVersion(buildinfo.Version())
			sdk.Serve(newBackend(sdk.Logger(args[0])))
			return nil
		},
	})
	return cmd
}
