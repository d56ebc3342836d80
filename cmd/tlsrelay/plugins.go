package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/backend"
)

func newPluginsCommand() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List the configured backend plugins: what each is, its version, capabilities, checksum and roles",
		Long: `plugins starts each backend plugin the config names, asks it what it is, and stops it:
name, built-in or command, version, capabilities, the SHA-256 of its binary, and the
roles that use it. A plugin that cannot start is listed with the reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, configFile)
			if err != nil {
				return err
			}
			// A throwaway state directory: listing leaves nothing behind.
			state, err := os.MkdirTemp("", "tlsrelay-plugins-state-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(state)
			host, err := assemble.Plugins(cfg, assemble.PluginOptions{Log: newLogger(cmd), StateDir: state})
			if err != nil {
				return err
			}
			defer host.Close()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tKIND\tVERSION\tCAPABILITIES\tROLES\tSHA256")
			for _, d := range host.Describe(cmd.Context()) {
				kind := "built-in"
				if !d.Builtin {
					kind = d.Command
				}
				var roles []string
				for _, r := range d.Roles {
					roles = append(roles, string(r))
				}
				version, caps := d.Info.Version, capabilities(d)
				if d.Err != nil {
					version, caps = "-", "cannot start: "+d.Err.Error()
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, kind, version, caps, dash(strings.Join(roles, ",")), dash(d.SHA256))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "deployment YAML (default: the embedded configs/tlsrelay.yaml)")
	cmd.AddCommand(&cobra.Command{
		Use:   "sha256 PATH",
		Short: "Print the sha256 line to pin a plugin binary in the YAML",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sum, err := backend.FileSHA256(args[0])
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(args[0])
			fmt.Fprintf(cmd.OutOrStdout(), "command: %s\nsha256: %s\n", abs, sum)
			return nil
		},
	})
	return cmd
}

func capabilities(d backend.Description) string {
	var caps []string
	for _, c := range d.Info.Capabilities {
		caps = append(caps, string(c))
	}
	return dash(strings.Join(caps, ","))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
