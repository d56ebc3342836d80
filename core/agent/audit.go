package agent

import (
	"fmt"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// What the leader records in its audit trail (Options.Audit): signatures and rejections
// as they are answered, the rest from the leader data a write changes; all of it
// flushed to disk before the write that publishes it (publish).

// signedEvent describes a certificate signed for act.
func (a *Agent) signedEvent(act protocol.SignCSR, chainPEM []byte) audit.Event {
	e := audit.Event{Event: audit.EventSigned, Unit: act.Unit, CSRSHA256: protocol.Digest(act.CSRPEM), Profile: act.Profile,
		Signer: a.opts.SignerName, CASHA256: a.signingCA()}
	if certs, err := certutil.ParseCertificates(chainPEM); err == nil {
		leaf := certs[0]
		e.Serial, e.NotAfter = leaf.SerialNumber.Text(16), leaf.NotAfter.UTC()
		e.Validity = leaf.NotAfter.Sub(leaf.NotBefore).String()
		e.Names = append(e.Names, leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			e.Names = append(e.Names, ip.String())
		}
		for _, u := range leaf.URIs {
			e.Names = append(e.Names, u.String())
		}
	}
	return e
}

// signingCA is the fingerprint of the signer's CA, parsed once per CA.
func (a *Agent) signingCA() string {
	if a.auditCA.pem != a.memory.SignerCA {
		a.auditCA.pem, a.auditCA.sha256 = a.memory.SignerCA, ""
		if certs, err := certutil.ParseCertificates([]byte(a.memory.SignerCA)); err == nil {
			a.auditCA.sha256 = caseal.Fingerprint(certs[0].Raw)
		}
	}
	return a.auditCA.sha256
}

// changeEvents describes what a leader-data write kv changes in before: the CA bundle,
// a rotation's phase, revocations added.
func changeEvents(before, kv map[string]string) []audit.Event {
	var events []audit.Event
	if ca, ok := kv[protocol.KeyCA]; ok && ca != before[protocol.KeyCA] && ca != "" {
		e := audit.Event{Event: audit.EventCAPublished}
		if certs, err := certutil.ParseCertificates([]byte(ca)); err == nil {
			e.CASHA256 = caseal.Fingerprint(certs[0].Raw)
			e.Reason = fmt.Sprintf("a bundle of %d", len(certs))
		}
		events = append(events, e)
	}
	if rec, ok := kv[protocol.KeyCARotation]; ok && rec != before[protocol.KeyCARotation] {
		now, on := protocol.DecodeRotation(rec)
		was, _ := protocol.DecodeRotation(before[protocol.KeyCARotation])
		switch {
		case !on && was.Phase != "":
			events = append(events, audit.Event{Event: audit.EventRotation, Phase: "done", From: was.From, To: was.To})
		case on && (now.Phase != was.Phase || now.To != was.To):
			events = append(events, audit.Event{Event: audit.EventRotation, Phase: now.Phase, From: now.From, To: now.To, Reason: now.Reason})
		}
	}
	written := map[string]string{}
	for k, v := range kv {
		if protocol.IsRevocationKey(k) && v != before[k] {
			written[k] = v
		}
	}
	if len(written) > 0 {
		old := map[string]bool{}
		for _, r := range protocol.RevocationsOf(before) {
			old[r.Serial] = true
		}
		for _, r := range protocol.RevocationsOf(written) {
			if !old[r.Serial] {
				reason := "departed " + r.Departed.UTC().Format("2006-01-02T15:04:05Z")
				if r.Reason != "" {
					reason = r.Reason
				}
				events = append(events, audit.Event{Event: audit.EventRevoked, Unit: r.Unit, Serial: r.Serial, NotAfter: r.NotAfter.UTC(), Reason: reason})
			}
		}
	}
	return events
}

// auditedKeys is the leader data changeEvents compares, from base with kv written over
// it: the CA, the rotation and the revocations, not the whole of leader data (a
// certificate per unit).
func auditedKeys(base, kv map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		if k == protocol.KeyCA || k == protocol.KeyCARotation || protocol.IsRevocationKey(k) {
			out[k] = v
		}
	}
	for k, v := range kv {
		if k == protocol.KeyCA || k == protocol.KeyCARotation || protocol.IsRevocationKey(k) {
			if v == "" {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
	}
	return out
}

// followLead keeps the signer warm while this unit leads, and records the loss of a
// lead that was on record. (The gain is recorded by the protocol's RecordLead.)
func (a *Agent) followLead(leader, onRecord bool) {
	if leader == a.leading {
		return
	}
	a.leading = leader
	a.keepSignerWarm(leader)
	if !leader && onRecord {
		if err := a.opts.Audit.Record(audit.Event{Event: audit.EventLeaderLost, Signer: a.opts.SignerName}); err != nil {
			a.log.Warn("the audit trail did not take the loss of the lead", "error", err)
		}
	}
}

// recordLead puts the gain of the lead on the audit trail (protocol.RecordLead): until
// it is there, the protocol has the leader do nothing else, and asks again.
func (a *Agent) recordLead() error {
	if err := a.opts.Audit.Record(audit.Event{Event: audit.EventLeaderGained, Signer: a.opts.SignerName}); err != nil {
		return fmt.Errorf("%s: leadership not taken up: %w", a.unit, err)
	}
	a.memory = a.memory.Step(protocol.LeadRecorded{})
	return nil
}

// warmKeeper is the part of a plugin host that keeps a backend running while asked
// (backend.Host.KeepWarm): a leading unit's signer is not stopped for idleness.
type warmKeeper interface {
	KeepWarm(role config.Role, keep bool)
}

func (a *Agent) keepSignerWarm(keep bool) {
	if k, ok := a.opts.Backends.(warmKeeper); ok {
		k.KeepWarm(config.RoleSigner, keep)
	}
}
