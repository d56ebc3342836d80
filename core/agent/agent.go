// Package agent runs one unit: it gathers the unit's view of the group (relation
// snapshot, own files), asks the protocol what to do, and does it through the backends,
// the relation and the unit's files; then it waits for the next change.
package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/secrets"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// Backends gives the agent the backend for a role. core/backend.Host implements it
// with plugin processes; tests may serve backends in-process.
type Backends interface {
	For(ctx context.Context, role config.Role) (sdk.Backend, error)
}

// Options configure an Agent.
type Options struct {
	Member      relation.Member
	Backends    Backends
	Certificate config.Certificate
	// Dir is the unit's output directory (tls.key, tls.crt, ca.crt).
	Dir  string
	Host config.Host
	Log  hclog.Logger
	// OnStatus is called whenever the unit's status changes (progress reporting).
	OnStatus func(Status)
	// Secrets are fetched through the secrets backend now and every SecretsRefresh;
	// OnSecret, if set, sees each fetch.
	Secrets        []config.Secret
	SecretsRefresh time.Duration
	OnSecret       func(secrets.Result, error)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Status is what a unit reports.
type Status struct {
	Unit     string
	Leader   bool
	State    protocol.State
	Detail   string
	Signing  []string
	Serial   string // of the installed certificate, hex
	NotAfter time.Time
}

// Agent is one unit.
type Agent struct {
	opts  Options
	unit  string
	files files
	want  protocol.Want
	log   hclog.Logger

	signerCA string    // the signer's CA bundle, loaded once per leadership
	last     Status    // the status last reported
	renewAt  time.Time // when the installed certificate is due for renewal; zero if none
}

// New prepares an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	unit := opts.Member.Unit()
	cn, err := opts.Certificate.CommonNameFor(unit)
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.SecretsRefresh <= 0 {
		opts.SecretsRefresh = time.Hour
	}
	return &Agent{
		opts:  opts,
		unit:  unit,
		files: files{dir: opts.Dir},
		log:   opts.Log.With("unit", unit),
		want: protocol.Want{
			CommonName: cn,
			SANs:       opts.Certificate.SANsFor(unit, opts.Host),
			Profile:    opts.Certificate.Profile,
			RenewAt:    opts.Certificate.RenewAt,
		},
	}, nil
}

// Backoff bounds the wait after a failed step before the agent tries again.
var (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Run drives the unit until ctx ends; it returns nil then, or the error that stopped it
// (the unit left the relation, or the relation closed). Configured secrets are fetched
// alongside, on their own schedule.
func (a *Agent) Run(ctx context.Context) error {
	if len(a.opts.Secrets) > 0 {
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.refresher().Run(ctx)
		}()
		defer func() { cancel(); <-done }()
	}
	return a.runProtocol(ctx)
}

func (a *Agent) refresher() *secrets.Refresher {
	return &secrets.Refresher{
		Backend:  func(ctx context.Context) (sdk.Backend, error) { return a.opts.Backends.For(ctx, config.RoleSecrets) },
		Secrets:  a.opts.Secrets,
		Interval: a.opts.SecretsRefresh,
		Log:      a.log,
		OnResult: a.opts.OnSecret,
	}
}

func (a *Agent) runProtocol(ctx context.Context) error {
	backoff := minBackoff
	for {
		if ctx.Err() != nil { // checked here too: a unit that acts every round never waits below
			return nil
		}
		snap, err := a.opts.Member.Snapshot(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: relation: %w", a.unit, err)
		}
		acted, err := a.step(ctx, snap)
		wait := a.nextWake()
		switch {
		case err != nil:
			a.log.Warn("step failed; will retry", "error", err, "in", backoff)
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		case acted:
			backoff = minBackoff
			continue // our own writes changed the view: decide again at once
		default:
			backoff = minBackoff
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-snap.Changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// nextWake is how long to sleep when nothing changes: until renewal is due, at most an hour.
func (a *Agent) nextWake() time.Duration {
	if a.renewAt.IsZero() {
		return time.Hour
	}
	return min(time.Hour, max(time.Until(a.renewAt), time.Second))
}

// step makes one decision and carries out its actions. acted says whether anything was done.
func (a *Agent) step(ctx context.Context, snap relation.Snapshot) (acted bool, err error) {
	local, notes, err := a.files.loadLocal()
	if err != nil {
		return false, fmt.Errorf("%s: %w", a.unit, err)
	}
	for _, note := range notes {
		a.log.Warn(note)
	}
	a.renewAt = time.Time{}
	if local.Installed != nil {
		a.renewAt = protocol.RenewalTime(local.Installed.Cert, a.want.RenewAt)
	}
	leader := snap.Leader == a.unit
	if !leader {
		a.signerCA = "" // a later leadership reloads it: the signer may have changed
	}
	d := protocol.Decide(protocol.View{
		Unit: a.unit, Leader: leader, Units: snap.Units, LeaderData: snap.LeaderData,
		Local: local, Want: a.want, Now: a.opts.Now(), SignerCA: a.signerCA,
		Policy: protocol.Policy{CommonName: func(unit string) string {
			cn, _ := a.opts.Certificate.CommonNameFor(unit)
			return cn
		}},
	})
	a.report(leader, d, local)
	if len(d.Actions) == 0 {
		return false, nil
	}
	return true, a.apply(ctx, d.Actions)
}

func (a *Agent) report(leader bool, d protocol.Decision, local protocol.Local) {
	s := Status{Unit: a.unit, Leader: leader, State: d.State, Detail: d.Detail, Signing: d.Signing}
	if cert := leaf(local); cert != nil {
		s.Serial, s.NotAfter = cert.SerialNumber.Text(16), cert.NotAfter
	}
	if s.State != a.last.State || s.Leader != a.last.Leader || s.Serial != a.last.Serial || len(s.Signing) != len(a.last.Signing) {
		a.log.Info("state", "state", s.State, "detail", s.Detail, "leader", s.Leader)
		if a.opts.OnStatus != nil {
			a.opts.OnStatus(s)
		}
	}
	a.last = s
}

// apply carries out a decision's actions. Leader-data writes are gathered into one write,
// so signing N CSRs wakes the group once, not N times.
func (a *Agent) apply(ctx context.Context, actions []protocol.Action) error {
	leaderData := map[string]string{}
	var errs []error
	for _, act := range actions {
		if err := a.do(ctx, act, leaderData); err != nil {
			errs = append(errs, err)
		}
	}
	if len(leaderData) > 0 {
		if err := a.opts.Member.SetLeaderData(ctx, leaderData); err != nil {
			errs = append(errs, fmt.Errorf("%s: publish leader data: %w", a.unit, err))
		}
	}
	return errors.Join(errs...)
}

func (a *Agent) do(ctx context.Context, act protocol.Action, leaderData map[string]string) error {
	switch act := act.(type) {
	case protocol.CreateCSR:
		return a.createCSR(ctx, act.Reason)
	case protocol.PublishCSR:
		return a.publishCSR(ctx, act.CSRPEM, act.Profile)
	case protocol.InstallCertificate:
		if err := a.files.install([]byte(act.ChainPEM), []byte(act.CAPEM)); err != nil {
			return fmt.Errorf("%s: install certificate: %w", a.unit, err)
		}
		a.log.Info("installed certificate", "dir", a.opts.Dir)
		return nil
	case protocol.InstallCA:
		return a.files.write(CAFile, []byte(act.CAPEM), 0o644)
	case protocol.LoadSignerCA:
		return a.loadSignerCA(ctx)
	case protocol.PublishCA:
		leaderData[protocol.KeyCA] = act.BundlePEM
	case protocol.SignCSR:
		return a.sign(ctx, act, leaderData)
	case protocol.RejectCSR:
		a.log.Warn("rejecting CSR", "of", act.Unit, "reason", act.Rejection.Reason)
		leaderData[protocol.RejectionKey(act.Unit)] = act.Rejection.Encode()
	case protocol.ForgetUnit:
		leaderData[protocol.SignedCertificateKey(act.Unit)] = ""
		leaderData[protocol.RejectionKey(act.Unit)] = ""
	default:
		return fmt.Errorf("%s: unknown action %T", a.unit, act)
	}
	return nil
}

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

func (a *Agent) publishCSR(ctx context.Context, csrPEM, profile string) error {
	err := a.opts.Member.SetUnitData(ctx, map[string]string{protocol.KeyCSR: csrPEM, protocol.KeyProfile: profile})
	if err != nil {
		return fmt.Errorf("%s: publish CSR: %w", a.unit, err)
	}
	return nil
}

func (a *Agent) loadSignerCA(ctx context.Context) error {
	b, err := a.opts.Backends.For(ctx, config.RoleSigner)
	if err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	ca, err := b.CA(ctx)
	if err != nil {
		return fmt.Errorf("%s: signer CA: %w", a.unit, err)
	}
	a.signerCA = string(ca.BundlePEM)
	return nil
}

// sign has the signer sign one unit's CSR. A CSR the signer refuses as invalid is
// rejected in leader data, so the unit learns why; other failures are retried.
func (a *Agent) sign(ctx context.Context, act protocol.SignCSR, leaderData map[string]string) error {
	b, err := a.opts.Backends.For(ctx, config.RoleSigner)
	if err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	cert, err := b.SignCSR(ctx, sdk.SignRequest{
		CSRPEM:   []byte(act.CSRPEM),
		Profile:  sdk.Profile(act.Profile),
		Validity: a.opts.Certificate.Validity,
		Unit:     act.Unit,
	})
	if sdk.IsCode(err, sdk.CodeInvalidArgument) {
		a.log.Warn("signer refused CSR", "of", act.Unit, "error", err)
		leaderData[protocol.RejectionKey(act.Unit)] = protocol.Rejection{
			CSRDigest: protocol.Digest(act.CSRPEM), Reason: err.Error()}.Encode()
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: sign CSR of %s: %w", a.unit, act.Unit, err)
	}
	leaderData[protocol.SignedCertificateKey(act.Unit)] = string(cert.ChainPEM)
	leaderData[protocol.RejectionKey(act.Unit)] = ""
	a.log.Info("signed CSR", "of", act.Unit)
	return nil
}
