package protocol

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// decideLeader is the leader side: the CA, then each unit's CSR, then departed units.
func decideLeader(v View) (actions []Action, signing []string, plan caPlan) {
	if v.Audited && !v.Memory.LeadRecorded {
		// What a leader does is on record from its first act: nothing before the lead is.
		return []Action{RecordLead{}}, nil, caPlan{state: "recording its lead in the audit trail"}
	}
	if v.Memory.SignerCA == "" {
		return []Action{LoadSignerCA{}}, nil, caPlan{state: "loading the signer's CA"}
	}
	if due, _ := remoteRecheck(v); due {
		return []Action{LoadSignerCA{}}, nil, caPlan{state: "loading the signer's remote CA again"}
	}
	if v.CA.Ref != "" {
		if act, problem := planReferencedCA(v); act != nil || problem != "" {
			return actionList(act), nil, caPlan{problem: problem, state: "loading the group's CA from ca.ref"}
		}
	}
	plan = planCA(v)
	if _, at := remoteRecheck(v); !at.IsZero() {
		plan.wake = earliestSet(plan.wake, at)
	}
	actions = plan.actions
	published := v.LeaderData[KeyCA]
	for _, a := range actions {
		if p, ok := a.(PublishCA); ok {
			published = p.BundlePEM // sign against the bundle this decision publishes
		}
	}
	if v.Memory.CAChain != "" || v.LeaderData[KeyCAChain] != "" {
		// The certificates above the signing CAs, for the bundle in force: those of an
		// old CA stay while it is in the bundle, a new leader keeps what it did not learn.
		if chain := chainFor(published, v.Memory.CAChain, v.LeaderData[KeyCAChain]); chain != v.LeaderData[KeyCAChain] {
			actions = append(actions, SetLeaderData{KV: map[string]string{KeyCAChain: chain}})
		}
	}
	if v.CA.ChainCRL != "" {
		if crls := chainCRLs(v.LeaderData[KeyCAChain], v.CA.ChainCRL); crls != v.LeaderData[KeyCAChainCRL] {
			actions = append(actions, SetLeaderData{KV: map[string]string{KeyCAChainCRL: crls}})
		}
	}
	if !plan.sign {
		return actions, nil, plan
	}
	pol := v.Policy
	if pol == nil {
		pol = defaultPolicy
	}
	validity, invalid := signingValidity(v, pol)
	held := holders(v, pol)
	for _, unit := range sortedKeys(v.Units) {
		act, csr := decideUnitCSR(v, pol, held, unit, published)
		if s, ok := act.(SignCSR); ok {
			if invalid != nil {
				plan.problem = "not signing: " + invalid.Error()
				continue
			}
			s.Validity = validity
			act, signing = s, append(signing, s.Unit)
			held.claim(pol, unit, csr) // before the next unit's CSR is judged
		}
		if act != nil {
			actions = append(actions, act)
		}
	}
	revocations, wake := planRevocations(v, published, plan.revoke)
	plan.wake = earliestSet(wake, plan.wake)
	return append(actions, revocations...), signing, plan
}

// sealedFor: the sealed CA key in leader data belongs to ca.
func (v View) sealedFor(ca *x509.Certificate) bool {
	sealed, ok := caseal.Decode(v.LeaderData[KeyCASealed])
	return ok && sealed.CASHA256 == caseal.Fingerprint(ca.Raw)
}

func actionList(act Action) []Action {
	if act == nil {
		return nil
	}
	return []Action{act}
}

// continuityProblem explains why a leader whose signer holds another CA does not sign.
func continuityProblem(v View, published string) string {
	group, signer := "?", "?"
	if certs, err := v.bundleCerts(published); err == nil {
		group = caseal.Fingerprint(certs[0].Raw)[:16]
	}
	if certs, err := v.signerCerts(); err == nil {
		signer = caseal.Fingerprint(certs[0].Raw)[:16]
	}
	why := "leader data holds no sealed CA key"
	switch {
	case v.Memory.Signer.Custody == sdk.CustodyShared:
		return fmt.Sprintf("not signing: this leader's signer claims the group's CA is shared (ca_shared), but it holds CA %s and the group's is %s: "+
			"does every leader-eligible unit's signer reach the same key?", signer, group)
	case v.LeaderData[KeyCASealed] != "" && !v.CASeal:
		why = "leader data holds a sealed CA key, but this unit has no ca_seal key to open it"
	case v.LeaderData[KeyCASealed] != "" && !v.Memory.Signer.Imports:
		why = "this leader's signer cannot import the sealed CA key (it does not claim ca_import)"
	case v.LeaderData[KeyCASealed] != "":
		why = "the sealed CA key in leader data is not the group CA's"
	}
	return fmt.Sprintf("not signing: this leader's signer holds CA %s but the group's CA is %s, and %s; "+
		"configure the same ca_seal key on every leader-eligible unit, or a shared CA (ca.ref, or a remote signer)", signer, group, why)
}

var defaultPolicy = policy.MustNew(policy.Defaults())

// decideUnitCSR returns what the leader must do about one unit's CSR, or nil, and the
// CSR when it is to be signed.
func decideUnitCSR(v View, pol *policy.Policy, held claims, unit, ca string) (Action, *x509.CertificateRequest) {
	bag := v.Units[unit]
	csrPEM := bag[KeyCSR]
	if csrPEM == "" {
		return nil, nil
	}
	digest := Digest(csrPEM)
	onRecord, refused := DecodeRejection(v.LeaderData[RejectionKey(unit)])
	standing := "" // the rule of a refusal of this CSR judged again, which stands if it still applies
	if refused && onRecord.CSRDigest == digest {
		rulesChanged := onRecord.Policy != "" && onRecord.Policy != pol.Fingerprint() && onRecord.Rule != RuleSigner
		again := onRecord.Rule == string(policy.RuleHeld) || onRecord.Rule == string(policy.RuleBudget)
		if !again && !rulesChanged {
			return nil, nil // refused already; the unit must send another CSR
		}
		// Judged again: a name held is signed once released, a unit over its budget
		// once a certificate expires; a CSR refused under other rules (the policy
		// mended, or another leader's) is judged by these.
		if !rulesChanged {
			standing = onRecord.Rule
		}
	}
	// reject refuses the CSR, noting a refusal within RejectionRetry of the unit's last
	// recorded one as a repeat: the trail holds one refusal of a unit a window, whatever
	// it floods the leader with, and its first after the window.
	reject := func(r Rejection) Action {
		r.CSRDigest, r.Profile, r.At, r.Recorded = digest, bag[KeyProfile], v.Now, v.Now
		if r.Rule != RuleSigner { // the signer refused, not the rules
			r.Policy = pol.Fingerprint()
		}
		repeat := refused && !onRecord.Recorded.IsZero() && v.Now.Before(onRecord.Recorded.Add(RejectionRetry))
		if repeat {
			r.Recorded = onRecord.Recorded
		}
		return RejectCSR{Unit: unit, CSRPEM: csrPEM, Rejection: r, Repeat: repeat}
	}
	if f := v.Memory.SignFailures[digest]; f.Refused {
		return reject(Rejection{Reason: f.Reason, Rule: RuleSigner}), nil
	}
	csr, err := pol.Check(policy.Request{Unit: unit, CSRPEM: []byte(csrPEM), Profile: bag[KeyProfile], Claimed: held,
		Verified: csrMemo{p: v.Parsed, k: slotKey{place: inBag, unit: unit, key: KeyCSR}, value: csrPEM}})
	if err != nil {
		r := Rejection{Reason: err.Error()}
		if refusal, ok := errors.AsType[*policy.Refusal](err); ok {
			r.Rule = string(refusal.Rule)
		}
		if standing == string(policy.RuleHeld) && r.Rule == standing {
			return nil, nil // still held: the refusal on record stands
		}
		return reject(r), nil
	}
	if v.LeaderData[SignedCertificateKey(unit)] != "" {
		if _, err := v.signedLeaf(unit, csr.PublicKey, ca); err == nil {
			return nil, nil // signed already, for this key, by a CA the group trusts
		}
	}
	issued := issuedTo(v, unit)
	if held, most := len(issued), pol.Rules().MaxCertificates; held >= most {
		if standing == string(policy.RuleBudget) {
			return nil, nil // still over: the refusal on record stands
		}
		return reject(Rejection{Rule: string(policy.RuleBudget), Reason: fmt.Sprintf(
			"CSR of %s refused: it holds %d unexpired certificates, the most policy.max_certificates allows; it is signed once one expires", unit, held)}), nil
	}
	return SignCSR{Unit: unit, CSRPEM: csrPEM, Profile: bag[KeyProfile], Earlier: encodeIssued(issued), CA: ca,
		Signed: v.Memory.Unpublished[digest]}, csr
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
