package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

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
	info, err := b.Info(ctx)
	if err != nil {
		return fmt.Errorf("%s: signer info: %w", a.unit, err)
	}
	signsCRL := info.Has(sdk.CapCRL)
	if !signsCRL {
		a.log.Warn("the signer signs no CRL: departed units are recorded but NOT revoked, and no ca.crl is published; "+
			"use a signer that claims crl (cfssl, openssl, pkcs11) where revocation matters", "signer", info.Name)
	}
	a.memory = a.memory.Step(protocol.SignerCALoaded{BundlePEM: string(ca.BundlePEM), SignsCRL: signsCRL,
		Signer: protocol.TermsOf(info), At: a.opts.Now()})
	return nil
}

// lacks turns a signer's Unimplemented answer to a move of its CA it claimed into
// memory (the leader plans that move no more, and signs on), and any other error into
// the error to retry: a backend that lacks a capability must not stop the agent.
func (a *Agent) lacks(capability sdk.Capability, err error) error {
	if !sdk.IsCode(err, sdk.CodeUnimplemented) {
		return err
	}
	a.memory = a.memory.Step(protocol.SignerLacks{Capability: capability})
	a.log.Warn("the signer claims a capability it does not implement: not asked again while this unit leads",
		"capability", capability, "error", err)
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
		a.memory = a.memory.Step(protocol.CRLUnsupported{})
		a.log.Warn("the signer claims to sign CRLs but does not: no ca.crl is published", "error", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: sign the CRL: %w", a.unit, err)
	}
	var check protocol.IssueCheck
	if err := check.CheckCRL(act, string(crl.PEM)); err != nil {
		a.opts.Metrics.SignerRefused(a.opts.SignerName, "crl")
		if errors.Is(err, protocol.ErrOtherCA) {
			a.memory = a.memory.Step(protocol.SignerCAChanged{})
		}
		return fmt.Errorf("%s: the signer %s returned a CRL that is not published: %w", a.unit, a.opts.SignerName, err)
	}
	leaderData[protocol.KeyCRL] = string(crl.PEM)
	a.log.Info("signed the group's CRL", "number", act.Number, "revoked", len(req.Revoked))
	return nil
}

// referencedCA fetches the CA that ca.ref names from the secrets backend.
func (a *Agent) referencedCA(ctx context.Context, ref string) (sdk.Secret, *x509.Certificate, error) {
	fail := func(err error) (sdk.Secret, *x509.Certificate, error) {
		return sdk.Secret{}, nil, fmt.Errorf("%s: the group's CA from ca.ref %s: %w", a.unit, ref, err)
	}
	store, err := a.opts.Backends.For(ctx, config.RoleSecrets)
	if err != nil {
		return fail(err)
	}
	secret, err := store.FetchSecret(ctx, ref)
	if err != nil {
		return fail(err)
	}
	certs, err := certutil.ParseCertificates(secret.CertificatePEM)
	if err != nil {
		return fail(err)
	}
	return secret, certs[0], nil
}

// loadReferencedCA tells the protocol which CA ca.ref names (its certificate only).
func (a *Agent) loadReferencedCA(ctx context.Context, act protocol.LoadReferencedCA) error {
	secret, _, err := a.referencedCA(ctx, act.Ref)
	if err != nil {
		return err
	}
	a.memory = a.memory.Step(protocol.ReferencedCALoaded{CertPEM: string(secret.CertificatePEM), ChainPEM: string(secret.IntermediatesPEM)})
	return nil
}

// importReferencedCA imports the CA that ca.ref names, key included, into the signer.
func (a *Agent) importReferencedCA(ctx context.Context, act protocol.ImportReferencedCA) error {
	b, err := a.signer(ctx)
	if err != nil {
		return err
	}
	secret, cert, err := a.referencedCA(ctx, act.Ref)
	if err != nil {
		return err
	}
	if err := b.ImportCA(ctx, sdk.CAKeyPair{CertPEM: secret.CertificatePEM, Key: secret.Key}); err != nil {
		return fmt.Errorf("%s: the group's CA from ca.ref %s: import into the signer: %w", a.unit, act.Ref, err)
	}
	fp := caseal.Fingerprint(cert.Raw)
	a.log.Info("imported the group's CA from ca.ref", "ref", act.Ref, "ca_sha256", fp)
	if err := a.opts.Audit.Record(audit.Event{Event: audit.EventCAImported, CASHA256: fp, Signer: a.opts.SignerName, Reason: "ca.ref " + act.Ref}); err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	a.memory = a.memory.Step(protocol.SignerCAChanged{Imported: fp})
	return nil
}

// maxBatch bounds the CSRs in one SignCSRs call (a gRPC message stays far below its
// 4 MB limit: a CSR and its certificate are about a kilobyte each); the leader publishes
// the certificates of each batch before it signs the next.
const maxBatch = 256

// signBatch has the signer sign CSRs (sdk.SignCSRs: in one call when the signer can, one
// SignCSR each when not). Each failure goes to the leader's memory, whose protocol
// rejects a CSR the signer has answered for good; other failures are retried.
func (a *Agent) signBatch(ctx context.Context, acts []protocol.SignCSR, w *leaderWrites) []error {
	acts = a.publishAgain(acts, w)
	if len(acts) == 0 {
		return nil
	}
	b, err := a.signer(ctx)
	if err != nil {
		return []error{err}
	}
	reqs := make([]sdk.SignRequest, len(acts))
	for i, act := range acts {
		reqs[i] = sdk.SignRequest{CSRPEM: []byte(act.CSRPEM), Profile: sdk.Profile(act.Profile), Validity: act.Validity, Unit: act.Unit}
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

// answer publishes the signer's certificate for one CSR, or gives its failure to the
// leader's memory: an error to retry, unless the signer has answered the CSR for good
// (the next decision rejects it).
func (a *Agent) answer(act protocol.SignCSR, r sdk.SignResult, took time.Duration, w *leaderWrites) error {
	digest := protocol.Digest(act.CSRPEM)
	if r.Err != nil {
		a.memory = a.memory.Step(protocol.CSRSignFailed{Digest: digest, Code: sdk.CodeOf(r.Err), Reason: r.Err.Error()})
		if a.memory.Refused(digest) {
			return nil
		}
		return fmt.Errorf("%s: sign CSR of %s: %w", a.unit, act.Unit, r.Err)
	}
	if _, err := w.check.Check(act, string(r.Certificate.ChainPEM), a.opts.Now()); err != nil {
		return a.refuseAnswer(act, r.Certificate.ChainPEM, err, w)
	}
	a.memory = a.memory.Step(protocol.CSRAnswered{Digest: digest})
	a.opts.Metrics.Signed(took)
	a.answerSigned(act, string(r.Certificate.ChainPEM), false, w)
	a.log.Info("signed CSR", "of", act.Unit)
	return nil
}

// answerSigned puts the certificate signed for act among w's writes, with its audit
// record unless it is on the trail already (recorded).
func (a *Agent) answerSigned(act protocol.SignCSR, chainPEM string, recorded bool, w *leaderWrites) {
	w.answer(act.Unit, act.CSRPEM, map[string]string{
		protocol.SignedCertificateKey(act.Unit): chainPEM, protocol.RejectionKey(act.Unit): "",
		protocol.IssuedKey(act.Unit): act.Earlier})
	if !recorded {
		w.events = append(w.events, a.signedEvent(act, []byte(chainPEM)))
	}
	if w.signed == nil {
		w.signed = map[string]protocol.Unpublished{}
	}
	w.signed[protocol.Digest(act.CSRPEM)] = protocol.Unpublished{ChainPEM: chainPEM, Recorded: recorded}
}

// publishAgain answers the acts whose certificate was signed before and not published
// (SignCSR.Signed) with that certificate, if it still passes the leader's check, and
// returns the acts left to sign: one signed certificate per CSR, never two.
func (a *Agent) publishAgain(acts []protocol.SignCSR, w *leaderWrites) []protocol.SignCSR {
	var toSign []protocol.SignCSR
	for _, act := range acts {
		if act.Signed.ChainPEM == "" {
			toSign = append(toSign, act)
			continue
		}
		if _, err := w.check.Check(act, act.Signed.ChainPEM, a.opts.Now()); err != nil {
			a.log.Warn("a certificate signed before and not published fails the check now; signing the CSR again", "of", act.Unit, "problem", err)
			a.memory = a.memory.Step(protocol.CertificatePublished{Digest: protocol.Digest(act.CSRPEM)})
			act.Signed = protocol.Unpublished{}
			toSign = append(toSign, act)
			continue
		}
		a.answerSigned(act, act.Signed.ChainPEM, act.Signed.Recorded, w)
		a.log.Info("publishing the certificate signed before for the CSR, not signing it again", "of", act.Unit)
	}
	return toSign
}

// refuseAnswer keeps a certificate the signer returned for act from being published:
// it does not match what the policy approved (protocol.IssueCheck). It is put on record
// (the audit trail, a metric naming the signer, the log) and counts as the signer's
// failure with the CSR, which is tried again and, after protocol.SignAttempts, refused.
// Another CA's signature means the signer's CA moved: it is loaded again.
func (a *Agent) refuseAnswer(act protocol.SignCSR, chainPEM []byte, why error, w *leaderWrites) error {
	digest := protocol.Digest(act.CSRPEM)
	a.memory = a.memory.Step(protocol.CSRSignFailed{Digest: digest, Code: sdk.CodeInternal, Reason: why.Error()})
	if errors.Is(why, protocol.ErrOtherCA) {
		a.memory = a.memory.Step(protocol.SignerCAChanged{})
	}
	a.opts.Metrics.SignerRefused(a.opts.SignerName, "certificate")
	e := a.signedEvent(act, chainPEM)
	e.Event, e.Reason = audit.EventSignerRefused, why.Error()
	w.events = append(w.events, e)
	a.log.Error("not publishing the signer's certificate: it is not what was approved", "of", act.Unit, "signer", a.opts.SignerName, "problem", why)
	return fmt.Errorf("%s: the signer %s returned a certificate for %s that is not published: %w", a.unit, a.opts.SignerName, act.Unit, why)
}

// sealCA exports the signer's CA and publishes its key sealed with the ca_seal key.
func (a *Agent) sealCA(ctx context.Context, leaderData map[string]string) error {
	b, err := a.signer(ctx)
	if err != nil {
		return err
	}
	ca, err := b.ExportCA(ctx)
	if err != nil {
		return a.lacks(sdk.CapCAExport, fmt.Errorf("%s: seal the CA: the signer's ExportCA: %w", a.unit, err))
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

// newSignerCA makes the CA act names and imports it into the signer, or has the signer
// generate it (act.Generate: the key is born in the signer, a token); the next decision
// rotates the group to it. A made key exists only in this process and the signer (and,
// sealed, in leader data).
func (a *Agent) newSignerCA(ctx context.Context, act protocol.NewSignerCA) error {
	b, err := a.signer(ctx)
	if err != nil {
		return err
	}
	name, life := act.CommonName, act.Lifetime
	if act.Generate {
		if _, err := sdk.GenerateCA(ctx, b, sdk.GenerateCARequest{CommonName: name, Validity: life}); err != nil {
			return a.lacks(sdk.CapCAGenerate, fmt.Errorf("%s: new CA: the signer's GenerateCA: %w", a.unit, err))
		}
	} else {
		certPEM, key, err := certutil.NewCA(name, life)
		if err != nil {
			return fmt.Errorf("%s: new CA: %w", a.unit, err)
		}
		if err := b.ImportCA(ctx, sdk.CAKeyPair{CertPEM: certPEM, Key: key}); err != nil {
			return a.lacks(sdk.CapCAImport, fmt.Errorf("%s: new CA: import into the signer: %w", a.unit, err))
		}
	}
	a.memory = a.memory.Step(protocol.SignerCAChanged{}) // the next decision starts the rotation
	a.log.Info("made a new CA for the group", "reason", act.Reason, "cn", name, "generated_by_signer", act.Generate)
	how := "made here and imported into the signer"
	if act.Generate {
		how = "generated by the signer"
	}
	if err := a.opts.Audit.Record(audit.Event{Event: audit.EventCACreated, Signer: a.opts.SignerName, Reason: act.Reason + "; " + how}); err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
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
		return a.lacks(sdk.CapCAImport, fmt.Errorf("%s: import the group's CA into the signer: %w", a.unit, err))
	}
	a.memory = a.memory.Step(protocol.SignerCAChanged{}) // the next decision compares it with the group's
	a.log.Info("imported the group's CA from its sealed copy", "ca_sha256", sealed.CASHA256)
	if err := a.opts.Audit.Record(audit.Event{Event: audit.EventCAImported, CASHA256: sealed.CASHA256, Signer: a.opts.SignerName, Reason: "its sealed copy in leader data"}); err != nil {
		return fmt.Errorf("%s: %w", a.unit, err)
	}
	return nil
}
