package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// leaderWrites gathers a decision's leader-data writes into one write, so signing N CSRs
// wakes the group once, not N times; each unit's certificate or rejection is guarded by
// the CSR it answers.
type leaderWrites struct {
	kv     map[string]string
	guards []relation.Guard
	// answered are the digests of the CSRs rejected in kv: once published, the leader's
	// memory of the signer's failures with them is done.
	answered []string
	// events are the audit records of the certificates and rejections in kv.
	events []audit.Event
	// signed are the certificates in kv, by the digest of the CSR each answers: kept in
	// the leader's memory if the write fails (protocol.LeaderMemory.Unpublished).
	signed map[string]protocol.Unpublished
	// check judges what the signer returns before it is published.
	check protocol.IssueCheck
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
	if len(w.kv) == 0 && len(w.events) == 0 {
		return nil
	}
	// On record before it is published: a certificate a unit can install has its record.
	// A signer's answer refused is on record though nothing is published.
	events := append(w.events, changeEvents(a.before, w.kv)...)
	signed := w.signed
	if err := a.opts.Audit.Record(events...); err != nil {
		*w = leaderWrites{kv: map[string]string{}, check: w.check}
		a.keepUnpublished(signed, false)
		return fmt.Errorf("%s: nothing published: %w", a.unit, err)
	}
	if len(w.kv) == 0 {
		*w = leaderWrites{kv: map[string]string{}, check: w.check}
		return nil
	}
	dropped, err := a.opts.Member.SetLeaderData(ctx, w.kv, w.guards...)
	if err == nil {
		a.before = auditedKeys(a.before, w.kv)
	}
	answered := w.answered
	*w = leaderWrites{kv: map[string]string{}, check: w.check}
	if len(dropped) > 0 {
		a.log.Info("not published: the unit sent another CSR meanwhile", "keys", dropped)
	}
	if err != nil {
		a.keepUnpublished(signed, true)
		return fmt.Errorf("%s: publish leader data: %w", a.unit, err)
	}
	for digest := range signed { // published, or dropped for a CSR replaced meanwhile
		a.memory = a.memory.Step(protocol.CertificatePublished{Digest: digest})
	}
	for _, digest := range answered {
		a.memory = a.memory.Step(protocol.CSRAnswered{Digest: digest})
	}
	a.opts.Metrics.NotReissued(notReissued(events))
	return nil
}

// keepUnpublished puts certificates signed and not published in the leader's memory:
// the next decision publishes them instead of signing their CSRs again.
func (a *Agent) keepUnpublished(signed map[string]protocol.Unpublished, recorded bool) {
	for digest, s := range signed {
		s.Recorded = recorded
		a.memory = a.memory.Step(protocol.CertificateUnpublished{Digest: digest, Unpublished: s})
	}
}

// notReissued counts the certificates events revoke because a rotation ended without
// their unit.
func notReissued(events []audit.Event) int {
	n := 0
	for _, e := range events {
		if e.Event == audit.EventRevoked && e.Reason == protocol.ReasonNotReissued {
			n++
		}
	}
	return n
}

func (a *Agent) do(ctx context.Context, act protocol.Action, w *leaderWrites) error {
	leaderData := w.kv
	switch act := act.(type) {
	case protocol.CreateCSR:
		if act.ReuseKey {
			return a.createCSRWithInstalledKey(ctx, act)
		}
		return a.createCSR(ctx, act)
	case protocol.PublishCSR:
		return a.publishCSR(ctx, act.CSRPEM, act.Profile)
	case protocol.WithdrawCSR:
		if err := a.opts.Member.SetUnitData(ctx, map[string]string{protocol.KeyCSR: ""}); err != nil {
			return fmt.Errorf("%s: withdraw the answered CSR: %w", a.unit, err)
		}
	case protocol.InstallCertificate:
		defer a.onChange.hold()()
		if err := a.files.install([]byte(act.ChainPEM), []byte(act.CAPEM)); err != nil {
			return fmt.Errorf("%s: install certificate: %w", a.unit, err)
		}
		a.log.Info("installed certificate", "dir", a.opts.Dir)
		if a.reported.last.Serial != "" {
			a.opts.Metrics.Renewed()
		}
		return a.derive(CertFile, KeyFile, CAFile)
	case protocol.InstallCA:
		defer a.onChange.hold()()
		if err := a.files.write(CAFile, []byte(act.CAPEM), a.files.mode); err != nil {
			return err
		}
		return a.derive(CAFile)
	case protocol.InstallChain:
		defer a.onChange.hold()()
		if err := a.files.write(CertFile, []byte(act.ChainPEM), a.files.mode); err != nil {
			return err
		}
		a.log.Info("added the group's intermediates to the installed certificate", "dir", a.opts.Dir)
		return a.derive(CertFile)
	case protocol.InstallCRL:
		defer a.onChange.hold()()
		if err := a.files.write(CRLFile, []byte(act.PEM), a.files.mode); err != nil {
			return err
		}
		a.onChange.changed(CRLFile)
	case protocol.SignCRL:
		return a.signCRL(ctx, act, leaderData)
	case protocol.LoadSignerCA:
		return a.loadSignerCA(ctx)
	case protocol.LoadReferencedCA:
		return a.loadReferencedCA(ctx, act)
	case protocol.ImportReferencedCA:
		return a.importReferencedCA(ctx, act)
	case protocol.PublishCA:
		leaderData[protocol.KeyCA] = act.BundlePEM
	case protocol.SetLeaderData:
		maps.Copy(leaderData, act.KV)
	case protocol.RecordLead:
		return a.recordLead()
	case protocol.NewSignerCA:
		return a.newSignerCA(ctx, act)
	case protocol.SealCA:
		return a.sealCA(ctx, leaderData)
	case protocol.ImportSealedCA:
		return a.importSealedCA(ctx, act)
	case protocol.RejectCSR:
		a.opts.Metrics.Rejected(act.Rejection.Rule)
		w.answer(act.Unit, act.CSRPEM, map[string]string{protocol.RejectionKey(act.Unit): act.Rejection.Encode()})
		w.answered = append(w.answered, act.Rejection.CSRDigest)
		if act.Repeat { // on record and in the log once a retry window, not once a CSR
			break
		}
		a.log.Warn("rejecting CSR", "of", act.Unit, "rule", act.Rejection.Rule, "reason", act.Rejection.Reason)
		w.events = append(w.events, audit.Event{Event: audit.EventRejected, Unit: act.Unit, Rule: act.Rejection.Rule,
			Reason: act.Rejection.Reason, CSRSHA256: protocol.Digest(act.CSRPEM)})
	case protocol.ForgetUnit:
		for _, key := range protocol.UnitKeys(act.Unit) {
			leaderData[key] = ""
		}
	default:
		return fmt.Errorf("%s: unknown action %T", a.unit, act)
	}
	return nil
}

// derive writes the files the unit's formats derive from its key, certificate and CA
// after those changed (changed names them), and asks for on_change with them all.
func (a *Agent) derive(changed ...string) error {
	written, err := a.files.writeDerived(a.opts.Certificate.Output)
	a.onChange.changed(append(changed, written...)...)
	if err != nil {
		return fmt.Errorf("%s: output formats: %w", a.unit, err)
	}
	return nil
}
