package protocol

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// decideLeader is the leader side: the CA, then each unit's CSR, then departed units.
func decideLeader(v View) (actions []Action, signing []string, problem string) {
	if v.SignerCA == "" {
		return []Action{LoadSignerCA{}}, nil, ""
	}
	published := v.LeaderData[KeyCA]
	if published != "" && !sameSigningCA(v.SignerCA, published) {
		// A new leader whose signer holds another CA than the group's: take the group's
		// CA from its sealed copy, or refuse. Never a second CA in silence.
		if act, ok := importSealed(v, published); ok {
			return []Action{act}, nil, ""
		}
		return nil, nil, continuityProblem(v, published)
	}
	if bundle := MergeCABundle(v.SignerCA, published, v.Now); bundle != published {
		actions = append(actions, PublishCA{BundlePEM: bundle})
	}
	if v.CASeal && !sealedFor(v.LeaderData[KeyCASealed], v.SignerCA) {
		actions = append(actions, SealCA{})
	}
	if published == "" {
		return actions, nil, "" // units sign against the published CA: publish it first
	}
	pol := v.Policy
	if pol == nil {
		pol = defaultPolicy
	}
	claimed := claimedNames(v, pol)
	for _, unit := range sortedKeys(v.Units) {
		if act := decideUnitCSR(v, pol, claimed, unit, published); act != nil {
			actions = append(actions, act)
			if s, ok := act.(SignCSR); ok {
				signing = append(signing, s.Unit)
			}
		}
	}
	for _, unit := range departedUnits(v) {
		actions = append(actions, ForgetUnit{Unit: unit})
	}
	return actions, signing, ""
}

// sameSigningCA: the first certificates of the two bundles are the same CA.
func sameSigningCA(a, b string) bool {
	ca, err1 := certutil.ParseCertificates([]byte(a))
	cb, err2 := certutil.ParseCertificates([]byte(b))
	return err1 == nil && err2 == nil && ca[0].Equal(cb[0])
}

// sealedFor: the sealed CA key in leader data belongs to the signing CA of bundle.
func sealedFor(sealedValue, bundle string) bool {
	sealed, ok := caseal.Decode(sealedValue)
	certs, err := certutil.ParseCertificates([]byte(bundle))
	return ok && err == nil && sealed.CASHA256 == caseal.Fingerprint(certs[0].Raw)
}

func importSealed(v View, published string) (Action, bool) {
	if !v.CASeal || !sealedFor(v.LeaderData[KeyCASealed], published) {
		return nil, false
	}
	certs, _ := certutil.ParseCertificates([]byte(published))
	return ImportSealedCA{CACertPEM: string(encodeCert(certs[0])), Sealed: v.LeaderData[KeyCASealed]}, true
}

// continuityProblem explains why a leader whose signer holds another CA does not sign.
func continuityProblem(v View, published string) string {
	group, signer := "?", "?"
	if certs, err := certutil.ParseCertificates([]byte(published)); err == nil {
		group = caseal.Fingerprint(certs[0].Raw)[:16]
	}
	if certs, err := certutil.ParseCertificates([]byte(v.SignerCA)); err == nil {
		signer = caseal.Fingerprint(certs[0].Raw)[:16]
	}
	why := "leader data holds no sealed CA key"
	switch {
	case v.LeaderData[KeyCASealed] != "" && !v.CASeal:
		why = "leader data holds a sealed CA key, but this unit has no ca_seal key to open it"
	case v.LeaderData[KeyCASealed] != "":
		why = "the sealed CA key in leader data is not the group CA's"
	}
	return fmt.Sprintf("not signing: this leader's signer holds CA %s but the group's CA is %s, and %s; "+
		"configure the same ca_seal key on every leader-eligible unit, or a shared CA (ca.ref, or a remote signer)", signer, group, why)
}

var defaultPolicy = policy.MustNew(policy.Defaults())

// claimedNames maps each name a joined unit's certificate holds exclusively (every SAN
// but the shared ones) to that unit, so that no other unit is signed for it.
func claimedNames(v View, pol *policy.Policy) map[string]string {
	claimed := map[string]string{}
	for unit := range v.Units {
		chain := v.LeaderData[SignedCertificateKey(unit)]
		if chain == "" {
			continue
		}
		certs, err := certutil.ParseCertificates([]byte(chain))
		if err != nil {
			continue
		}
		names := []string{}
		for _, d := range certs[0].DNSNames {
			names = append(names, policy.Normalize(d))
		}
		for _, ip := range certs[0].IPAddresses {
			names = append(names, ip.String())
		}
		for _, name := range names {
			if pol.Exclusive(unit, name) {
				claimed[name] = unit
			}
		}
	}
	return claimed
}

// decideUnitCSR returns what the leader must do about one unit's CSR, or nil.
func decideUnitCSR(v View, pol *policy.Policy, claimed map[string]string, unit, ca string) Action {
	bag := v.Units[unit]
	csrPEM := bag[KeyCSR]
	if csrPEM == "" {
		return nil
	}
	digest := Digest(csrPEM)
	if r, ok := DecodeRejection(v.LeaderData[RejectionKey(unit)]); ok && r.CSRDigest == digest {
		return nil // refused already; the unit must send another CSR
	}
	csr, err := pol.Check(policy.Request{Unit: unit, CSRPEM: []byte(csrPEM), Profile: bag[KeyProfile], Claimed: claimed})
	if err != nil {
		return RejectCSR{Unit: unit, Rejection: Rejection{CSRDigest: digest, Reason: err.Error()}}
	}
	if chain := v.LeaderData[SignedCertificateKey(unit)]; chain != "" {
		if _, err := leafFor(chain, csr.PublicKey, ca, v.Now); err == nil {
			return nil // signed already, for this key, by a CA the group trusts
		}
	}
	return SignCSR{Unit: unit, CSRPEM: csrPEM, Profile: bag[KeyProfile]}
}

// departedUnits lists units that have leader data but no longer a bag.
func departedUnits(v View) []string {
	var gone []string
	for key := range v.LeaderData {
		for _, suffix := range []string{SignedCertificateKey(""), RejectionKey("")} {
			unit, ok := strings.CutSuffix(key, suffix)
			if _, joined := v.Units[unit]; ok && !joined {
				gone = append(gone, unit)
			}
		}
	}
	slices.Sort(gone)
	return slices.Compact(gone)
}

// MergeCABundle returns the bundle to publish: the signer's CAs first, then each CA of
// the published bundle that the signer's lacks and that has not expired at now.
func MergeCABundle(signerPEM, publishedPEM string, now time.Time) string {
	signer, err := certutil.ParseCertificates([]byte(signerPEM))
	if err != nil {
		return signerPEM
	}
	out := signerPEM
	if old, err := certutil.ParseCertificates([]byte(publishedPEM)); err == nil {
		for _, c := range old {
			if !containsCert(signer, c.Raw) && c.NotAfter.After(now) {
				out = ensureNewline(out) + string(encodeCert(c))
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
