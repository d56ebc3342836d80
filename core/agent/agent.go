// Package agent runs one unit: it gathers the unit's view of the group (relation
// snapshot, own files), asks the protocol what to do, and does it through the backends,
// the relation and the unit's files; then it waits for the next change.
package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/core/metrics"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/secrets"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
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
	// Relation names the relation (the sealed CA is bound to it); SealKey is the ca_seal
	// key, nil when none is configured.
	Relation string
	SealKey  []byte
	// CARef names the group's CA in the secrets backend (ca.ref): a leader imports it
	// into its signer before it signs. Empty: the signer's own CA.
	CARef string
	// SignerName names the signer backend (roles.signer): the group records it, and a
	// leader with another signer rotates the group to its CA.
	SignerName string
	// CARotateBefore: a leader rotates the group's CA when less than this is left of it
	// (ca.rotate_before); 0 never.
	CARotateBefore time.Duration
	// RevokeDepartedAfter: a departed unit's certificate enters the CRL once it has been
	// gone this long (ca.revoke_departed_after).
	RevokeDepartedAfter time.Duration
	// Policy is what this unit signs while it leads; nil is policy.Defaults() with the
	// certificate's common name template.
	Policy *policy.Policy
	// Once: return as soon as the unit holds a current certificate with nothing left
	// to do (cron, init containers), instead of running until ctx ends.
	Once bool
	// Metrics, if set, counts what the unit does (core/metrics).
	Metrics *metrics.Metrics
	// Sync makes each file the unit writes durable before it takes its name; nil is an
	// fsync each. The units of one process share an atomicfile.SyncGroup's.
	Sync func(*os.File) error
	// StepTimeout bounds one decision's work, every backend call in it included: a
	// plugin stuck in a call is killed at this deadline and started afresh. Default
	// DefaultStepTimeout.
	StepTimeout time.Duration
}

// DefaultStepTimeout is the default Options.StepTimeout: far above any sane signing
// (milliseconds) or Barbican round trip, far below "hung".
const DefaultStepTimeout = 2 * time.Minute

// Status is what a unit reports.
type Status struct {
	Unit     string
	Leader   bool
	State    protocol.State
	Detail   string
	Signing  []string
	Serial   string // of the installed certificate, hex
	NotAfter time.Time
	// CAState is the leader's word on the group's CA (protocol.Decision.CAState).
	CAState string
	// Trusts lists the fingerprints of the CAs in the installed ca.crt (protocol.TrustsOf).
	Trusts string
	// Error is the last step's failure, or why the leader does not sign; empty when well.
	Error string
}

// fields is the status as the unit publishes it in its bag.
func (s Status) fields() map[string]string {
	notAfter := ""
	if !s.NotAfter.IsZero() {
		notAfter = s.NotAfter.UTC().Format(time.RFC3339)
	}
	return map[string]string{protocol.KeyState: string(s.State), protocol.KeyDetail: s.Detail,
		protocol.KeySerial: s.Serial, protocol.KeyNotAfter: notAfter, protocol.KeyError: s.Error,
		protocol.KeyTrusts: s.Trusts, protocol.KeyCAState: s.CAState}
}

// Agent is one unit.
type Agent struct {
	opts  Options
	unit  string
	files files
	want  protocol.Want
	log   hclog.Logger

	signerCA   string                       // the signer's CA bundle, loaded once per leadership
	signerCRL  bool                         // the signer signs CRLs (loaded with signerCA)
	leaderWake time.Time                    // when the leader's decision changes with time (protocol.Decision.WakeAt)
	last       Status                       // the status last reported
	published  map[string]string            // the status fields last written to the bag
	lastUnits  map[string]map[string]string // the bags the last decision saw
	renewAt    time.Time                    // when the installed certificate is due for renewal; zero if none
	// signFailures counts Internal failures of the signer per CSR digest.
	signFailures map[string]int
	onChange     *onChange
	poke         chan struct{}          // on_change finished: look at the status again
	health       atomic.Pointer[Status] // the last status, for Health from other goroutines
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
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = DefaultStepTimeout
	}
	if opts.Policy == nil {
		rules := policy.Defaults()
		rules.CommonName = opts.Certificate.CommonName
		if opts.Policy, err = policy.New(rules); err != nil {
			return nil, err
		}
	}
	uid, gid, err := opts.Certificate.Output.IDs()
	if err != nil {
		return nil, err
	}
	writer := atomicfile.Writer{Owner: atomicfile.OwnerOf(uid, gid), Sync: opts.Sync}
	a := &Agent{
		opts:  opts,
		unit:  unit,
		files: files{dir: opts.Dir, mode: opts.Certificate.Output.FileMode(), writer: writer},
		log:   opts.Log.With("unit", unit),
		want: protocol.Want{
			CommonName:   cn,
			SANs:         opts.Certificate.SANsFor(unit, opts.Host),
			Profile:      opts.Certificate.Profile,
			RenewAt:      opts.Certificate.RenewAt,
			RenewJitter:  opts.Certificate.RenewJitter,
			Validity:     opts.Certificate.Validity,
			KeyAlgorithm: opts.Certificate.Key.Algorithm,
			KeySize:      opts.Certificate.Key.Size,
		},
		poke: make(chan struct{}, 1),
	}
	if c := opts.Certificate; c.OnChange != "" {
		a.onChange = &onChange{command: c.OnChange, timeout: max(c.OnChangeTimeout, time.Second), log: a.log,
			env:  []string{"TLSRELAY_UNIT=" + unit, "TLSRELAY_OUTPUT_DIR=" + opts.Dir},
			poke: func() { a.pokeStatus() }, metrics: opts.Metrics}
	}
	return a, nil
}

// pokeStatus makes the protocol loop look again (to report on_change's outcome).
func (a *Agent) pokeStatus() {
	select {
	case a.poke <- struct{}{}:
	default:
	}
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
	// One writer per output directory: a second agent (or `up`) on it would race on
	// the key and certificate files.
	if err := safedir.Ensure(a.opts.Dir, 0o755); err != nil {
		return fault.Permanent(fmt.Errorf("%s: output directory: %w", a.unit, err))
	}
	unlock, err := safedir.Lock(a.opts.Dir)
	if err != nil {
		return fault.Permanent(fmt.Errorf("%s: output directory: %w", a.unit, err))
	}
	defer unlock()
	defer a.onChange.close()
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
		OnResult: func(r secrets.Result, err error) {
			a.opts.Metrics.SecretFetched(r.Name, fetchResult(err))
			if a.opts.OnSecret != nil {
				a.opts.OnSecret(r, err)
			}
		},
	}
}

// fetchResult classes a fetch for metrics: ok, or the error's class (not found,
// permission denied, unavailable, ...).
func fetchResult(err error) string {
	if err == nil {
		return "ok"
	}
	return sdk.CodeOf(err).String()
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
		stepCtx, cancel := context.WithTimeout(ctx, a.opts.StepTimeout)
		acted, err := a.step(stepCtx, snap)
		cancel()
		if err != nil || !acted || a.last.Leader {
			// A unit's status is published when it settles (or fails), not after every
			// action: the states it passes through on the way (a CSR made, a certificate
			// being installed) would each be a write to etcd. The leader's is published
			// as it goes: it says what the group's CA is doing (a rotation's phases)
			// and whom it is signing for, while it is busy doing it.
			a.publishStatus(ctx, err)
		}
		if fault.IsPermanent(err) {
			a.log.Error("stopping: trying again cannot mend this", "error", err)
			return err
		}
		wait := a.nextWake()
		switch {
		case err != nil:
			a.log.Warn("step failed; will retry", "error", err, "in", backoff)
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		case acted:
			backoff = minBackoff
			continue // our own writes changed the view: decide again at once
		case a.opts.Once && a.last.State == protocol.StateCertificateAvailable:
			a.log.Info("converged: the certificate is current; exiting (once)")
			return nil
		default:
			backoff = minBackoff
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-snap.Changed:
			if a.last.Leader && !a.gather(ctx) {
				timer.Stop()
				return nil
			}
		case <-a.poke:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// leaderGather is how long a leader lets changes gather after one arrives before it
// decides: a group that starts at once sends its CSRs within moments of one another,
// and one decision signs them all (one batch, one relation write) where it would
// otherwise make a decision, each O(units), per CSR.
const leaderGather = 20 * time.Millisecond

// gather waits leaderGather; false if ctx ended meanwhile.
func (a *Agent) gather(ctx context.Context) bool {
	t := time.NewTimer(leaderGather)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// nextWake is how long to sleep when nothing changes: until renewal is due, or the
// leader's next timed work (a revocation, the CRL), at most an hour.
func (a *Agent) nextWake() time.Duration {
	wait := time.Hour
	for _, at := range []time.Time{a.renewAt, a.leaderWake} {
		if !at.IsZero() {
			wait = min(wait, max(time.Until(at), time.Second))
		}
	}
	return wait
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
		a.renewAt = protocol.RenewalTime(local.Installed.Cert, a.want)
	}
	leader := snap.Leader == a.unit
	a.lastUnits = snap.Units
	if !leader {
		a.signerCA = "" // a later leadership reloads it: the signer may have changed
	}
	d := protocol.Decide(protocol.View{
		Unit: a.unit, Leader: leader, Units: snap.Units, LeaderData: snap.LeaderData,
		Local: local, Want: a.want, Now: a.opts.Now(), SignerCA: a.signerCA, CASeal: len(a.opts.SealKey) > 0,
		Policy: a.opts.Policy,
		CA: protocol.CATerms{Signer: a.opts.SignerName, Request: snap.Requests[protocol.RequestRotateCA],
			RotateBefore: a.opts.CARotateBefore, Fixed: a.opts.CARef != ""},
		CRL: protocol.CRLTerms{Enabled: a.signerCRL, RevokeAfter: a.opts.RevokeDepartedAfter},
	})
	a.leaderWake = d.WakeAt
	a.report(leader, d, local)
	if len(d.Actions) == 0 {
		return false, nil
	}
	return true, a.apply(ctx, d.Actions)
}

func (a *Agent) report(leader bool, d protocol.Decision, local protocol.Local) {
	s := Status{Unit: a.unit, Leader: leader, State: d.State, Detail: d.Detail, Signing: d.Signing, Error: d.LeaderProblem,
		CAState: d.CAState}
	if err := a.onChange.status(); s.Error == "" && err != "" {
		s.Error = "on_change: " + err
	}
	if d.LeaderProblem != "" && d.LeaderProblem != a.last.Error {
		a.log.Error("leader cannot sign", "problem", d.LeaderProblem)
	}
	if cert := leaf(local); cert != nil {
		s.Serial, s.NotAfter, s.Trusts = cert.SerialNumber.Text(16), cert.NotAfter, protocol.TrustsOf(local.Installed.CAPEM)
	}
	a.opts.Metrics.Expires(a.unit, s.NotAfter)
	if s.State != a.last.State || s.Leader != a.last.Leader || s.Serial != a.last.Serial || s.Trusts != a.last.Trusts || s.CAState != a.last.CAState || len(s.Signing) != len(a.last.Signing) || s.Error != a.last.Error {
		a.log.Info("state", "state", s.State, "detail", s.Detail, "leader", s.Leader)
		if a.opts.OnStatus != nil {
			a.opts.OnStatus(s)
		}
	}
	a.last = s
	a.health.Store(&s)
}

// Health says whether the unit holds a certificate that has not expired, with its state
// and last error; safe from any goroutine (the /healthz handler).
func (a *Agent) Health() (ok bool, detail string) {
	s := a.health.Load()
	if s == nil {
		return false, a.unit + ": starting"
	}
	detail = fmt.Sprintf("%s: %s", a.unit, s.State)
	if s.Error != "" {
		detail += ": " + s.Error
	}
	if s.NotAfter.IsZero() {
		return false, detail + " (no certificate yet)"
	}
	if !a.opts.Now().Before(s.NotAfter) {
		return false, detail + fmt.Sprintf(" (the certificate expired at %s)", s.NotAfter.UTC().Format(time.RFC3339))
	}
	return true, detail
}

// publishStatus writes the unit's status into its bag when it changed, for `status`.
// A failure here is logged, not returned: the status is a report, not the protocol.
func (a *Agent) publishStatus(ctx context.Context, stepErr error) {
	s := a.last
	if stepErr != nil {
		s.Error = stepErr.Error()
	}
	fields := s.fields()
	changed := map[string]string{}
	for k, v := range fields {
		// Nothing published yet by this agent: write every field, empty ones too, so
		// a predecessor's stale value (an error before a reload) is cleared.
		if a.published == nil || a.published[k] != v {
			changed[k] = v
		}
	}
	if len(changed) == 0 {
		return
	}
	if err := a.opts.Member.SetUnitData(ctx, changed); err != nil {
		a.log.Debug("could not publish status", "error", err)
		return
	}
	a.published = fields
}

// leaderWrites gathers a decision's leader-data writes into one write, so signing N CSRs
// wakes the group once, not N times; each unit's certificate or rejection is guarded by
// the CSR it answers.
type leaderWrites struct {
	kv     map[string]string
	guards []relation.Guard
}

func (w *leaderWrites) answer(unit, csrPEM string, kv map[string]string) {
	g := relation.Guard{Unit: unit, Field: protocol.KeyCSR, Value: csrPEM}
	for k, v := range kv {
		w.kv[k] = v
		g.Keys = append(g.Keys, k)
	}
	w.guards = append(w.guards, g)
}

// apply carries out a decision's actions. Leader data is published after each batch of
// signatures (and once at the end), so units install their certificates while the
// leader signs the next batch.
func (a *Agent) apply(ctx context.Context, actions []protocol.Action) error {
	w := &leaderWrites{kv: map[string]string{}}
	var errs []error
	var batch []protocol.SignCSR // consecutive SignCSR actions, signed in one call
	flush := func() {
		for len(batch) > 0 {
			chunk := batch[:min(len(batch), maxBatch)]
			batch = batch[len(chunk):]
			errs = append(errs, a.signBatch(ctx, chunk, w)...)
			errs = append(errs, a.publish(ctx, w))
		}
	}
	for _, act := range actions {
		if s, ok := act.(protocol.SignCSR); ok {
			batch = append(batch, s)
			continue
		}
		flush()
		if err := a.do(ctx, act, w); err != nil {
			errs = append(errs, err)
		}
	}
	flush()
	errs = append(errs, a.publish(ctx, w))
	return errors.Join(errs...)
}

// publish writes the leader data gathered in w, and empties it.
func (a *Agent) publish(ctx context.Context, w *leaderWrites) error {
	if len(w.kv) == 0 {
		return nil
	}
	dropped, err := a.opts.Member.SetLeaderData(ctx, w.kv, w.guards...)
	*w = leaderWrites{kv: map[string]string{}}
	if len(dropped) > 0 {
		a.log.Info("not published: the unit sent another CSR meanwhile", "keys", dropped)
	}
	if err != nil {
		return fmt.Errorf("%s: publish leader data: %w", a.unit, err)
	}
	return nil
}

func (a *Agent) do(ctx context.Context, act protocol.Action, w *leaderWrites) error {
	leaderData := w.kv
	switch act := act.(type) {
	case protocol.CreateCSR:
		if act.ReuseKey {
			return a.createCSRWithInstalledKey(ctx, act.Reason)
		}
		return a.createCSR(ctx, act.Reason)
	case protocol.PublishCSR:
		return a.publishCSR(ctx, act.CSRPEM, act.Profile)
	case protocol.InstallCertificate:
		if err := a.files.install([]byte(act.ChainPEM), []byte(act.CAPEM)); err != nil {
			return fmt.Errorf("%s: install certificate: %w", a.unit, err)
		}
		a.log.Info("installed certificate", "dir", a.opts.Dir)
		if a.last.Serial != "" {
			a.opts.Metrics.Renewed()
		}
		a.onChange.changed()
		return nil
	case protocol.InstallCA:
		return a.installFile(CAFile, act.CAPEM)
	case protocol.InstallCRL:
		return a.installFile(CRLFile, act.PEM)
	case protocol.SignCRL:
		return a.signCRL(ctx, act, leaderData)
	case protocol.LoadSignerCA:
		return a.loadSignerCA(ctx)
	case protocol.PublishCA:
		leaderData[protocol.KeyCA] = act.BundlePEM
	case protocol.SetLeaderData:
		maps.Copy(leaderData, act.KV)
	case protocol.NewSignerCA:
		return a.newSignerCA(ctx, act.Reason)
	case protocol.SealCA:
		return a.sealCA(ctx, leaderData)
	case protocol.ImportSealedCA:
		return a.importSealedCA(ctx, act)
	case protocol.RejectCSR:
		a.log.Warn("rejecting CSR", "of", act.Unit, "rule", act.Rejection.Rule, "reason", act.Rejection.Reason)
		a.opts.Metrics.Rejected(act.Rejection.Rule)
		w.answer(act.Unit, a.csrOf(act.Unit, act.Rejection.CSRDigest), map[string]string{protocol.RejectionKey(act.Unit): act.Rejection.Encode()})
	case protocol.ForgetUnit:
		leaderData[protocol.SignedCertificateKey(act.Unit)] = ""
		leaderData[protocol.RejectionKey(act.Unit)] = ""
	default:
		return fmt.Errorf("%s: unknown action %T", a.unit, act)
	}
	return nil
}

// installFile writes one of the group's files (ca.crt, ca.crl) and runs on_change.
func (a *Agent) installFile(name, pemText string) error {
	if err := a.files.write(name, []byte(pemText), a.files.mode); err != nil {
		return err
	}
	a.onChange.changed()
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

// createCSRWithInstalledKey makes the renewal CSR from tls.key (key_rotation never).
func (a *Agent) createCSRWithInstalledKey(ctx context.Context, reason string) error {
	keyPEM, err := a.files.read(KeyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	key, err := certutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", a.unit, a.files.path(KeyFile), err)
	}
	csr, err := certutil.NewCSRForKey(sdk.CSRRequest{CommonName: a.want.CommonName, SANs: a.want.SANs}, key)
	if err != nil {
		return fmt.Errorf("%s: create CSR (%s): %w", a.unit, reason, err)
	}
	if err := a.files.savePending(keyPEM, csr.CSRPEM); err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	a.log.Info("created CSR with the installed key", "reason", reason)
	return a.publishCSR(ctx, string(csr.CSRPEM), a.want.Profile)
}

func (a *Agent) publishCSR(ctx context.Context, csrPEM, profile string) error {
	err := a.opts.Member.SetUnitData(ctx, map[string]string{protocol.KeyCSR: csrPEM, protocol.KeyProfile: profile})
	if err != nil {
		return fmt.Errorf("%s: publish CSR: %w", a.unit, err)
	}
	return nil
}

// signer is the backend that signs for the group while this unit leads.
func (a *Agent) signer(ctx context.Context) (sdk.Backend, error) {
	b, err := a.opts.Backends.For(ctx, config.RoleSigner)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.unit, err)
	}
	return b, nil
}

func (a *Agent) loadSignerCA(ctx context.Context) error {
	b, err := a.signer(ctx)
	if err != nil {
		return err
	}
	ca, err := b.CA(ctx)
	if err != nil {
		return fmt.Errorf("%s: signer CA: %w", a.unit, err)
	}
	if _, err := certutil.ParseCertificates(ca.BundlePEM); err != nil {
		return fmt.Errorf("%s: the signer's CA is unreadable: %w", a.unit, err)
	}
	if a.opts.CARef != "" {
		if ca, err = a.importReferencedCA(ctx, b, ca); err != nil {
			return err
		}
	}
	info, err := b.Info(ctx)
	if err != nil {
		return fmt.Errorf("%s: signer info: %w", a.unit, err)
	}
	if a.signerCRL = info.Has(sdk.CapCRL); !a.signerCRL {
		a.log.Info("the signer does not sign CRLs: departed units are recorded, no ca.crl is published", "signer", info.Name)
	}
	a.signerCA = string(ca.BundlePEM)
	return nil
}

// signCRL has the signer sign the group's CRL and publishes it.
func (a *Agent) signCRL(ctx context.Context, act protocol.SignCRL, leaderData map[string]string) error {
	b, err := a.signer(ctx)
	if err != nil {
		return err
	}
	req := sdk.CRLRequest{ThisUpdate: act.Now.Add(-certutil.Backdate), NextUpdate: act.Now.Add(protocol.CRLLifetime), Number: act.Number}
	for _, r := range act.Revoked {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			continue // the leader wrote it from a parsed certificate: cannot happen
		}
		req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: serial, RevokedAt: r.Departed})
	}
	crl, err := sdk.SignCRL(ctx, b, req)
	if sdk.IsCode(err, sdk.CodeUnimplemented) {
		// It claimed the capability but lacks it: no CRL, and no reason to stop signing.
		a.signerCRL = false
		a.log.Warn("the signer claims to sign CRLs but does not: no ca.crl is published", "error", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: sign the CRL: %w", a.unit, err)
	}
	leaderData[protocol.KeyCRL] = string(crl.PEM)
	a.log.Info("signed the group's CRL", "number", act.Number, "revoked", len(req.Revoked))
	return nil
}

// importReferencedCA fetches the CA that ca.ref names and, unless the signer holds it
// already, imports it; it returns the signer's CA after.
func (a *Agent) importReferencedCA(ctx context.Context, signer sdk.Backend, have sdk.CA) (sdk.CA, error) {
	fail := func(err error) (sdk.CA, error) {
		return sdk.CA{}, fmt.Errorf("%s: the group's CA from ca.ref %s: %w", a.unit, a.opts.CARef, err)
	}
	store, err := a.opts.Backends.For(ctx, config.RoleSecrets)
	if err != nil {
		return fail(err)
	}
	secret, err := store.FetchSecret(ctx, a.opts.CARef)
	if err != nil {
		return fail(err)
	}
	want, err := certutil.ParseCertificates(secret.CertificatePEM)
	if err != nil {
		return fail(err)
	}
	if got, err := certutil.ParseCertificates(have.BundlePEM); err == nil && got[0].Equal(want[0]) {
		return have, nil
	}
	if err := signer.ImportCA(ctx, sdk.CAKeyPair{CertPEM: secret.CertificatePEM, Key: secret.Key}); err != nil {
		return fail(fmt.Errorf("import into the signer: %w", err))
	}
	a.log.Info("imported the group's CA from ca.ref", "ref", a.opts.CARef, "ca_sha256", caseal.Fingerprint(want[0].Raw))
	if have, err = signer.CA(ctx); err != nil {
		return fail(err)
	}
	return have, nil
}

// signAttempts is how often a CSR the signer fails on with Internal is tried before it
// is rejected: such a failure may pass, but one that repeats is the CSR's.
const signAttempts = 3

// maxBatch bounds the CSRs in one SignCSRs call (a gRPC message stays far below its
// 4 MB limit: a CSR and its certificate are about a kilobyte each); the leader publishes
// the certificates of each batch before it signs the next.
const maxBatch = 256

// signBatch has the signer sign CSRs (sdk.SignCSRs: in one call when the signer can, one
// SignCSR each when not), for the policy's validity. A CSR the signer refuses as
// invalid, or fails on signAttempts times, is rejected in leader data so the unit learns
// why; other failures (the signer unavailable) are retried.
func (a *Agent) signBatch(ctx context.Context, acts []protocol.SignCSR, w *leaderWrites) []error {
	b, err := a.signer(ctx)
	if err != nil {
		return []error{err}
	}
	validity, err := a.validity()
	if err != nil {
		return []error{err}
	}
	reqs := make([]sdk.SignRequest, len(acts))
	for i, act := range acts {
		reqs[i] = sdk.SignRequest{CSRPEM: []byte(act.CSRPEM), Profile: sdk.Profile(act.Profile), Validity: validity, Unit: act.Unit}
	}
	start := time.Now()
	results, err := sdk.SignCSRs(ctx, b, reqs)
	if err != nil {
		return []error{fmt.Errorf("%s: sign %d CSRs: %w", a.unit, len(reqs), err)}
	}
	each := time.Since(start) / time.Duration(len(acts)) // a batch's time, shared among its CSRs
	var errs []error
	for i, act := range acts {
		if err := a.answer(act, results[i], each, w); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// answer publishes the signer's result for one CSR: its certificate, or a rejection
// when the error is final for that CSR.
func (a *Agent) answer(act protocol.SignCSR, r sdk.SignResult, took time.Duration, w *leaderWrites) error {
	digest := protocol.Digest(act.CSRPEM)
	if r.Err != nil && a.finalSignError(digest, r.Err) {
		a.log.Warn("signer refused CSR", "of", act.Unit, "error", r.Err)
		a.opts.Metrics.Rejected(protocol.RuleSigner)
		w.answer(act.Unit, act.CSRPEM, map[string]string{protocol.RejectionKey(act.Unit): protocol.Rejection{
			CSRDigest: digest, Reason: r.Err.Error(), Rule: protocol.RuleSigner}.Encode()})
		return nil
	}
	if r.Err != nil {
		return fmt.Errorf("%s: sign CSR of %s: %w", a.unit, act.Unit, r.Err)
	}
	delete(a.signFailures, digest)
	a.opts.Metrics.Signed(took)
	w.answer(act.Unit, act.CSRPEM, map[string]string{
		protocol.SignedCertificateKey(act.Unit): string(r.Certificate.ChainPEM), protocol.RejectionKey(act.Unit): ""})
	a.log.Info("signed CSR", "of", act.Unit)
	return nil
}

// finalSignError says whether a signer's error answers the CSR for good: InvalidArgument
// at once, Internal (or an unclassified error) once it has repeated signAttempts times.
func (a *Agent) finalSignError(digest string, err error) bool {
	switch sdk.CodeOf(err) {
	case sdk.CodeInvalidArgument:
		return true
	case sdk.CodeInternal:
		if a.signFailures == nil {
			a.signFailures = map[string]int{}
		}
		a.signFailures[digest]++
		return a.signFailures[digest] >= signAttempts
	}
	return false
}

// validity is the lifetime to sign for: certificate.validity, capped by the policy and
// by the signing CA's own expiry.
func (a *Agent) validity() (time.Duration, error) {
	now := a.opts.Now()
	certs, err := certutil.ParseCertificates([]byte(a.signerCA))
	if err != nil {
		return 0, fmt.Errorf("%s: the signer's CA: %w", a.unit, err)
	}
	v := a.opts.Policy.Validity(a.opts.Certificate.Validity, certs[0], now)
	if certs[0].NotAfter.Sub(now) <= certutil.Backdate || v <= 0 {
		return 0, fmt.Errorf("%s: the signer's CA %q expires at %s: nothing can be signed with it",
			a.unit, certs[0].Subject.CommonName, certs[0].NotAfter.UTC().Format(time.RFC3339))
	}
	return v, nil
}

// csrOf is the CSR a rejection answers, from the snapshot the decision was made on.
func (a *Agent) csrOf(unit, digest string) string {
	if csr := a.lastUnits[unit][protocol.KeyCSR]; protocol.Digest(csr) == digest {
		return csr
	}
	return ""
}

// sealCA exports the signer's CA and publishes its key sealed with the ca_seal key.
func (a *Agent) sealCA(ctx context.Context, leaderData map[string]string) error {
	b, err := a.signer(ctx)
	if err != nil {
		return err
	}
	ca, err := b.ExportCA(ctx)
	if err != nil {
		return fmt.Errorf("%s: seal the CA: the signer's ExportCA: %w", a.unit, err)
	}
	certs, err := certutil.ParseCertificates(ca.CertPEM)
	if err != nil {
		return fmt.Errorf("%s: seal the CA: %w", a.unit, err)
	}
	sealed, err := caseal.Seal(a.opts.SealKey, a.opts.Relation, certs[0].Raw, ca.Key)
	if err != nil {
		return fmt.Errorf("%s: seal the CA: %w", a.unit, err)
	}
	leaderData[protocol.KeyCASealed] = sealed.Encode()
	a.log.Info("sealed the CA key into leader data", "ca_sha256", sealed.CASHA256)
	return nil
}

// newSignerCA makes a CA like the signer's current one (its name and lifetime) and
// imports it into the signer; the next decision rotates the group to it. The key exists
// only in this process and the signer (and, sealed, in leader data).
func (a *Agent) newSignerCA(ctx context.Context, reason string) error {
	b, err := a.signer(ctx)
	if err != nil {
		return err
	}
	certs, err := certutil.ParseCertificates([]byte(a.signerCA))
	if err != nil {
		return fmt.Errorf("%s: new CA: the signer's CA: %w", a.unit, err)
	}
	old := certs[0]
	certPEM, key, err := certutil.NewCA(old.Subject.CommonName, old.NotAfter.Sub(old.NotBefore))
	if err != nil {
		return fmt.Errorf("%s: new CA: %w", a.unit, err)
	}
	if err := b.ImportCA(ctx, sdk.CAKeyPair{CertPEM: certPEM, Key: key}); err != nil {
		return fmt.Errorf("%s: new CA: import into the signer: %w", a.unit, err)
	}
	a.signerCA = "" // load it again: the next decision starts the rotation
	a.log.Info("made a new CA for the group", "reason", reason, "cn", old.Subject.CommonName)
	return nil
}

// importSealedCA opens the group's sealed CA key and makes the group's CA the signer's.
func (a *Agent) importSealedCA(ctx context.Context, act protocol.ImportSealedCA) error {
	b, err := a.signer(ctx)
	if err != nil {
		return err
	}
	sealed, _ := caseal.Decode(act.Sealed)
	certs, err := certutil.ParseCertificates([]byte(act.CACertPEM))
	if err != nil {
		return fmt.Errorf("%s: import the group's CA: %w", a.unit, err)
	}
	keyPEM, err := caseal.Open(a.opts.SealKey, a.opts.Relation, certs[0].Raw, sealed)
	if err != nil {
		return fmt.Errorf("%s: import the group's CA: %w", a.unit, err)
	}
	if err := b.ImportCA(ctx, sdk.CAKeyPair{CertPEM: []byte(act.CACertPEM), Key: keyPEM}); err != nil {
		return fmt.Errorf("%s: import the group's CA into the signer: %w", a.unit, err)
	}
	a.signerCA = "" // load it again: the next decision compares it with the group's
	a.log.Info("imported the group's CA from its sealed copy", "ca_sha256", sealed.CASHA256)
	return nil
}

// StatusFromBag reads the status a unit published in its bag (see Status.fields).
func StatusFromBag(unit string, leader bool, bag map[string]string) Status {
	s := Status{Unit: unit, Leader: leader, State: protocol.State(bag[protocol.KeyState]),
		Detail: bag[protocol.KeyDetail], Serial: bag[protocol.KeySerial], Error: bag[protocol.KeyError],
		Trusts: bag[protocol.KeyTrusts], CAState: bag[protocol.KeyCAState]}
	s.NotAfter, _ = time.Parse(time.RFC3339, bag[protocol.KeyNotAfter])
	return s
}
