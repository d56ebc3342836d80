package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/internal/termsafe"
)

type auditFlags struct {
	config, file, unit, since string
	json                      bool
}

func newAuditCommand() *cobra.Command {
	var f auditFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the leader's audit trail: what it signed, rejected, imported and revoked",
		Long: `audit reads the audit trail a leading unit keeps on its host (audit.path of --config,
or --file): one record per certificate signed (unit, serial, names, the CSR's SHA-256,
profile, validity, signer, CA), CSR rejected (rule, reason), CA imported, made or
published, rotation phase, revocation, and leadership gained or lost; oldest first,
rotated files included. A line a crash tore is skipped, and counted on stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := f.file
			if path == "" {
				cfg, err := loadConfig(cmd, f.config)
				if err != nil {
					return err
				}
				if path = cfg.Audit.Path; path == "" {
					return fmt.Errorf("config %s: audit.path is not set: no audit trail is kept (set it, or give --file)", cfg.Source)
				}
			}
			filter := audit.Filter{Unit: f.unit}
			if f.since != "" {
				since, err := parseSince(f.since, time.Now())
				if err != nil {
					return fmt.Errorf("--since %q: %w", f.since, err)
				}
				filter.Since = since
			}
			events, skipped, err := audit.Read(path, filter)
			if err != nil {
				return err
			}
			if skipped > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "tlsrelay audit: %d unreadable lines skipped in %s\n", skipped, path)
			}
			out := cmd.OutOrStdout()
			if f.json {
				enc := json.NewEncoder(out)
				for _, e := range events {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			// Reasons quote what units asked for: escaped before any terminal.
			w := tabwriter.NewWriter(termsafe.Writer(out), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tEVENT\tUNIT\tDETAIL")
			for _, e := range events {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Event, e.Unit, detail(e))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&f.config, "config", "", "deployment YAML whose audit.path to read (default: the embedded configs/tlsrelay.yaml)")
	cmd.Flags().StringVar(&f.file, "file", "", "the audit file to read, instead of the config's audit.path")
	cmd.Flags().StringVar(&f.unit, "unit", "", "only events concerning this unit (or recorded by it)")
	cmd.Flags().StringVar(&f.since, "since", "", "only events since a time (RFC 3339) or a duration ago (24h)")
	cmd.Flags().BoolVar(&f.json, "json", false, "one JSON object per line, as recorded")
	return cmd
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("neither a duration like 24h nor an RFC 3339 time like 2026-12-02T10:00:00Z")
	}
	return t, nil
}

// detail is the one-line summary of an event's fields for the table.
func detail(e audit.Event) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("serial", e.Serial)
	if len(e.Names) > 0 {
		add("names", strings.Join(e.Names, ","))
	}
	add("profile", e.Profile)
	add("validity", e.Validity)
	add("rule", e.Rule)
	add("phase", e.Phase)
	add("from", short(e.From))
	add("to", short(e.To))
	add("ca", short(e.CASHA256))
	add("signer", e.Signer)
	add("leader", e.Leader)
	add("reason", e.Reason)
	return strings.Join(parts, " ")
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}
