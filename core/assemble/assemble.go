// Package assemble turns a deployment's config into the parts that run its units: the
// relation store, the plugin host, each agent's options; and refuses a config those
// parts cannot run (its ca_seal key, its signing policy, the custody its signer claims).
// It is the one place that reads a config for them: tlsrelay's commands, `up`, the scale
// benchmark and core/unit call it, and nothing else builds a plugin host or a store from
// a config, so none of them can leave out what a backend must be told.
package assemble

import (
	"cmp"
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/backend"
	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/core/metrics"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// Checked is what a config gives every unit it runs, read once: the ca_seal key and the
// signing policy.
type Checked struct {
	SealKey []byte
	Policy  *policy.Policy
}

// Check is what a config must pass, beyond config.Load, before a unit runs it: its
// ca_seal key readable and its signing policy valid. A reload is refused when it fails.
func Check(cfg *config.Config) (Checked, error) {
	sealKey, err := caseal.LoadKey(cfg.CASeal.KeyFile)
	if err != nil {
		return Checked{}, err
	}
	pol, err := cfg.SigningPolicy()
	if err != nil {
		return Checked{}, err
	}
	return Checked{SealKey: sealKey, Policy: pol}, nil
}

// PluginOptions are what a plugin host needs beside the config.
type PluginOptions struct {
	// Self is the tlsrelay binary that serves built-in backends (default: this one).
	Self string
	Log  hclog.Logger
	// Metrics, if set, counts the plugins' restarts.
	Metrics *metrics.Metrics
	// StateDir, if set, holds the backends' state instead of the config's state_dir.
	StateDir string
}

// Plugins makes the host of the backends cfg names: each one's state under its state
// directory, the group's certificate.validity told to each (a signer with a fixed
// lifetime refuses a mismatch), plugin_idle, restarts counted.
func Plugins(cfg *config.Config, o PluginOptions) (*backend.Host, error) {
	var onRestart, onIdleStop func(string)
	if o.Metrics != nil {
		onRestart, onIdleStop = o.Metrics.PluginRestarted, o.Metrics.PluginIdleStopped
	}
	return backend.New(backend.Options{Self: o.Self, Plugins: cfg.Plugins, Roles: cfg.Roles,
		StateDir: cmp.Or(o.StateDir, cfg.StateDir), Logger: o.Log, OnRestart: onRestart,
		Validity: cfg.Certificate.Validity, IdleStop: cfg.PluginIdle, OnIdleStop: onIdleStop})
}

// Agent returns the options cfg gives its unit's agent (cfg.Unit's member, files in
// cfg.Certificate.Output.Dir, its audit trail opened); callers add what only they have
// (status, secrets, metrics, a shared file flush).
func (c Checked) Agent(cfg *config.Config, member relation.Member, backends agent.Backends, log hclog.Logger) (agent.Options, error) {
	trail, err := audit.Open(audit.Options{Path: cfg.Audit.Path, MaxBytes: cfg.Audit.MaxBytes, Keep: cfg.Audit.Keep,
		Relation: cfg.Relation.Name, Unit: cfg.Unit})
	if err != nil {
		return agent.Options{}, fault.Permanent(err)
	}
	return agent.Options{
		Audit:  trail,
		Member: member, Backends: backends, Certificate: cfg.Certificate, Dir: cfg.Certificate.Output.Dir,
		Host: config.LocalHost(), Log: log, Relation: cfg.Relation.Name, SealKey: c.SealKey, CARef: cfg.CA.Ref,
		Policy: c.Policy, SignerName: cfg.Roles.Signer, CARotateBefore: cfg.CA.RotateBefore,
		CARotationTrustTimeout: cfg.CA.RotationTrustTimeout, CARotationReissueTimeout: cfg.CA.RotationReissueTimeout,
		CARemoteRecheck: cfg.CA.RemoteRecheck, RevokeDepartedAfter: cfg.CA.RevokeDepartedAfter, CAChainCRLFile: cfg.CA.ChainCRLFile,
	}, nil
}

// Custody refuses a ca_seal the signer gives nothing to seal with: sealing needs a
// signer that exports its CA key and imports one (custody exportable). A signer that
// cannot start here is left to the agent, which retries it.
func (c Checked) Custody(ctx context.Context, cfg *config.Config, host *backend.Host) error {
	if len(c.SealKey) == 0 || !cfg.Relation.LeaderEligible || cfg.Roles.Signer == "" {
		return nil
	}
	info, err := host.Info(ctx, cfg.Roles.Signer)
	if err != nil {
		return nil
	}
	if custody := info.Custody(); custody != sdk.CustodyExportable {
		return fault.Permanent(fmt.Errorf("ca_seal (key_file %s): the signer %s (roles.signer) keeps its CA with custody %s: "+
			"it does not both export its CA key (ca_export) and import one (ca_import), so there is nothing to seal; "+
			"remove ca_seal (a shared or remote CA needs none)", cfg.CASeal.KeyFile, cfg.Roles.Signer, custody))
	}
	return nil
}
