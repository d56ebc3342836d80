package sim

import (
	"errors"
	"fmt"
	"maps"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// executor carries out one decision's actions, as core/agent's apply does: consecutive
// SignCSR actions signed in batches, leader data gathered and published after each
// batch and at the end, each answer guarded by the CSR it answers.
type executor struct {
	u        *unit
	leader   bool
	term     int
	batch    []protocol.SignCSR
	kv       map[string]string
	guards   []relation.Guard
	answered []string
	signed   map[string]string
	check    protocol.IssueCheck
}

func (x *executor) apply(actions []protocol.Action) {
	for _, act := range actions {
		if s, ok := act.(protocol.SignCSR); ok {
			x.batch = append(x.batch, s)
			continue
		}
		x.flush()
		x.do(act)
	}
	x.flush()
	x.publish()
}

func (x *executor) flush() {
	if len(x.batch) == 0 {
		return
	}
	for _, act := range x.batch {
		x.sign(act)
	}
	x.batch = nil
	x.publish()
}

// answer adds kv to the write, guarded by the unit's CSR.
func (x *executor) answer(unit, csrPEM string, kv map[string]string) {
	g := relation.Guard{Unit: unit, Field: protocol.KeyCSR, Value: csrPEM}
	for k, v := range kv {
		x.kv[k] = v
		g.Keys = append(g.Keys, k)
	}
	x.guards = append(x.guards, g)
}

func (x *executor) publish() {
	if len(x.kv) == 0 {
		return
	}
	u := x.u
	u.inflight = append(u.inflight, op{leader: true, term: x.term, incarnation: u.incarnation, kv: x.kv, guards: x.guards, answered: x.answered, signed: x.signed})
	x.kv, x.guards, x.answered, x.signed = map[string]string{}, nil, nil, nil
}

func (x *executor) sign(act protocol.SignCSR) {
	u := x.u
	digest := protocol.Digest(act.CSRPEM)
	fault, names := u.w.signerFault(act)
	chain, err := u.signer.sign(act.CSRPEM, act.Profile, act.Validity, fault, names)
	if err != nil {
		u.memory = u.memory.Step(protocol.CSRSignFailed{Digest: digest, Code: sdk.CodeOf(err), Reason: err.Error()})
		return
	}
	u.w.signedBy(u, act, chain, fault)
	if _, err := x.check.Check(act, chain, u.w.now); err != nil && !u.w.unchecked {
		// Not published: the signer's failure with the CSR, tried again and in the end
		// refused (protocol.SignAttempts); another CA's signature means the signer's CA
		// moved, and it is loaded again.
		u.memory = u.memory.Step(protocol.CSRSignFailed{Digest: digest, Code: sdk.CodeInternal, Reason: err.Error()})
		if errors.Is(err, protocol.ErrOtherCA) {
			u.memory = u.memory.Step(protocol.SignerCAChanged{})
		}
		u.w.failures[digest]++
		u.w.tracef("       the signer's answer for %s is refused: %v", act.Unit, err)
		return
	}
	u.memory = u.memory.Step(protocol.CSRAnswered{Digest: digest})
	if x.signed == nil {
		x.signed = map[string]string{}
	}
	x.signed[protocol.SignedCertificateKey(act.Unit)] = digest
	x.answer(act.Unit, act.CSRPEM, map[string]string{protocol.SignedCertificateKey(act.Unit): chain,
		protocol.RejectionKey(act.Unit): "", protocol.IssuedKey(act.Unit): act.Earlier})
}

func (x *executor) do(act protocol.Action) {
	u := x.u
	switch act := act.(type) {
	case protocol.CreateCSR:
		u.createCSR(act)
	case protocol.PublishCSR:
		u.setBag(map[string]string{protocol.KeyCSR: act.CSRPEM, protocol.KeyProfile: act.Profile})
	case protocol.WithdrawCSR:
		u.setBag(map[string]string{protocol.KeyCSR: ""})
	case protocol.InstallCertificate:
		certs, err := certutil.ParseCertificates([]byte(act.ChainPEM))
		if err != nil {
			panic(err) // the protocol verified it
		}
		u.cert, u.certKey, u.caPEM = certs[0], u.pendingKey, act.CAPEM
		u.pendingKey, u.pendingCSR = nil, ""
		u.w.installed(u, certs[0])
	case protocol.InstallCA:
		u.caPEM = act.CAPEM
	case protocol.InstallCRL:
		u.crlPEM = act.PEM
	case protocol.LoadSignerCA:
		u.memory = u.memory.Step(protocol.SignerCALoaded{BundlePEM: u.signer.bundle(), SignsCRL: u.signer.signsCRL,
			Signer: u.signer.terms(), At: u.w.now})
	case protocol.PublishCA:
		x.kv[protocol.KeyCA] = act.BundlePEM
	case protocol.SetLeaderData:
		maps.Copy(x.kv, act.KV)
	case protocol.SignCRL:
		crl, err := u.signer.signCRL(act)
		if err == nil {
			err = x.check.CheckCRL(act, crl)
		}
		switch {
		case errors.Is(err, protocol.ErrOtherCA):
			u.memory = u.memory.Step(protocol.SignerCAChanged{})
		case err == nil:
			x.kv[protocol.KeyCRL] = crl
		}
	case protocol.NewSignerCA:
		if act.Generate {
			if !u.signer.terms().Generate {
				u.memory = u.memory.Step(protocol.SignerLacks{Capability: sdk.CapCAGenerate})
				return
			}
		}
		old := u.signer.holder.current
		next := u.w.newCA()
		if old != nil {
			next.cert.Subject = old.cert.Subject // (the name is the sim's; the lifetime the world's)
		}
		u.signer.holder.current = next
		u.memory = u.memory.Step(protocol.SignerCAChanged{})
	case protocol.SealCA:
		c := u.signer.holder.current
		sealed, err := caseal.Seal(u.w.sealKey, u.w.relation, c.cert.Raw, keyPEM(c.key))
		if err != nil {
			panic(err)
		}
		x.kv[protocol.KeyCASealed] = sealed.Encode()
	case protocol.ImportSealedCA:
		sealed, _ := caseal.Decode(act.Sealed)
		certs, err := certutil.ParseCertificates([]byte(act.CACertPEM))
		if err != nil {
			return
		}
		key, err := caseal.Open(u.w.sealKey, u.w.relation, certs[0].Raw, sealed)
		if err != nil {
			return // the agent's error: tried again at the next step
		}
		if err := u.signer.importCA(act.CACertPEM, key); err != nil {
			return
		}
		u.memory = u.memory.Step(protocol.SignerCAChanged{})
	case protocol.RejectCSR:
		x.answer(act.Unit, act.CSRPEM, map[string]string{protocol.RejectionKey(act.Unit): act.Rejection.Encode()})
		x.answered = append(x.answered, act.Rejection.CSRDigest)
		u.w.rejected(u, act)
	case protocol.ForgetUnit:
		for _, k := range protocol.UnitKeys(act.Unit) {
			x.kv[k] = ""
		}
	default:
		panic(fmt.Sprintf("the simulator does not carry out %T", act))
	}
}
