// Command tlsrelay-scale is the scale benchmark: a real etcd, real leader-eligible
// agents and many simulated units (internal/app/scale). scripts/bench-scale.sh builds it
// with tlsrelay and runs it; docs/BENCHMARKS.md has its figures and their commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/internal/app/scale"
	"github.com/tlsrelay/tlsrelay/plugins/builtin"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == scale.ServeEtcd {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := scale.ServeEmbedded(ctx, os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := newCommand().Execute(); err != nil {
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var o scale.Options
	var configFile, scenarios, waves, cpuProfile string
	cmd := &cobra.Command{
		Use:   "tlsrelay-scale",
		Short: "Time a large group: converging, failover, CA rotation and revocation",
		Long: `tlsrelay-scale starts a real etcd (--etcd, Debian's etcd-server) in a process of its own,
--leaders leader-eligible 'tlsrelay agent' processes with their plugins, and --units
simulated units in this process: each joins with a lease of its own, makes its key and
CSR in memory, publishes them and its status, and installs what the leader signs,
deciding every step with the protocol's unit side. It reports how long the group takes to
converge and what the leader, etcd and the units paid; then runs each --scenarios in turn:
failover (the leader killed with -9 while a new unit asks), rotate (a CA rotation with
pairs of units handshaking throughout), revoke (--waves of units departing, until every
other unit holds the CRL listing them). Data, state and logs go to --dir.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg, err := config.Load(configFile, builtin.Names())
			if err != nil {
				return err
			}
			o.Config = cfg
			if configFile != "" {
				if o.ConfigFile, err = filepath.Abs(configFile); err != nil {
					return err
				}
			}
			if o.Tlsrelay == "" {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				o.Tlsrelay = filepath.Join(filepath.Dir(self), "tlsrelay")
			}
			if _, err := exec.LookPath(o.Tlsrelay); err != nil {
				return fmt.Errorf("--tlsrelay %s: %w (build it: go build -o DIR/tlsrelay ./cmd/tlsrelay)", o.Tlsrelay, err)
			}
			if _, err := exec.LookPath(o.Etcd); err != nil && o.Etcd != scale.Embedded {
				return fmt.Errorf("--etcd %s: %w (apt-get install etcd-server)", o.Etcd, err)
			}
			if scenarios != "" {
				o.Scenarios = strings.Split(scenarios, ",")
			}
			for _, w := range strings.Split(waves, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(w))
				if err != nil || n < 1 {
					return fmt.Errorf("--waves %q: want counts of units, comma-separated", waves)
				}
				o.Waves = append(o.Waves, n)
			}
			if o.Dir == "" {
				if o.Dir, err = os.MkdirTemp("", "tlsrelay-scale-"); err != nil {
					return err
				}
				defer os.RemoveAll(o.Dir)
			}
			o.Out = cmd.OutOrStdout()
			o.Log = hclog.New(&hclog.LoggerOptions{Name: "tlsrelay-scale", Level: hclog.Warn, Output: cmd.ErrOrStderr()})
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			// Thousands of units' keys, CSRs and parsed certificates: collect a quarter
			// as often as Go's default, as `tlsrelay up` does.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(400)
			}
			start := time.Now()
			err = scale.Run(ctx, o)
			fmt.Fprintf(cmd.OutOrStdout(), "total %s\n", time.Since(start).Round(time.Second))
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Units, "units", 1000, "simulated units")
	f.IntVar(&o.Leaders, "leaders", 3, "leader-eligible agent processes")
	f.StringVar(&o.Dir, "dir", "", "directory for etcd's data, the agents' state and logs (default: a new one, removed after)")
	f.StringVar(&o.Tlsrelay, "tlsrelay", "", "the tlsrelay binary the agents run (default: beside this one)")
	f.StringVar(&o.Etcd, "etcd", scale.Embedded, "embedded: the etcd tlsrelay embeds, in a child process; or an etcd binary (Debian's: /usr/bin/etcd)")
	f.StringVar(&configFile, "config", "", "deployment YAML for the agents' and units' certificates (default: the embedded one)")
	f.StringVar(&scenarios, "scenarios", "", "after converging, run these in turn: failover, rotate, revoke (comma-separated)")
	f.StringVar(&waves, "waves", "100", "units departing in each wave of the revoke scenario (comma-separated)")
	f.DurationVar(&o.RevokeAfter, "revoke-after", 5*time.Second, "the agents' ca.revoke_departed_after")
	f.DurationVar(&o.LeaseTTL, "lease-ttl", 10*time.Second, "every unit's lease TTL (relation.etcd.lease_ttl)")
	f.IntVar(&o.Parallel, "parallel", 256, "units joining (or departing) at once")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write this process's CPU profile (the simulated units') to this file")
	f.IntVar(&o.Pairs, "pairs", 16, "pairs of units handshaking throughout a rotation")
	return cmd
}
