package protocol

import (
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// decideLeader is the leader side: the CA, then each unit's CSR, then departed units.
func decideLeader(v View) (actions []Action, signing []string) {
	if v.SignerCA == "" {
		return []Action{LoadSignerCA{}}, nil
	}
	published := v.LeaderData[KeyCA]
	if bundle := MergeCABundle(v.SignerCA, published, v.Now); bundle != published {
		// First leader, or a new leader whose signer holds another CA: publish the
		// signer's CA first and keep trusting the previous ones until they expire.
		return []Action{PublishCA{BundlePEM: bundle}}, nil
	}
	for _, unit := range sortedKeys(v.Units) {
		if act := decideUnitCSR(v, unit, published); act != nil {
			actions = append(actions, act)
			if s, ok := act.(SignCSR); ok {
				signing = append(signing, s.Unit)
			}
		}
	}
	for _, unit := range departedUnits(v) {
		actions = append(actions, ForgetUnit{Unit: unit})
	}
	return actions, signing
}

// decideUnitCSR returns what the leader must do about one unit's CSR, or nil.
func decideUnitCSR(v View, unit, ca string) Action {
	bag := v.Units[unit]
	csrPEM := bag[KeyCSR]
	if csrPEM == "" {
		return nil
	}
	digest := Digest(csrPEM)
	if r, ok := decodeRejection(v.LeaderData[RejectionKey(unit)]); ok && r.CSRDigest == digest {
		return nil // refused already; the unit must send another CSR
	}
	csr, err := certutil.ParseCSR([]byte(csrPEM), unit)
	if err != nil {
		return RejectCSR{Unit: unit, Rejection: Rejection{CSRDigest: digest, Reason: err.Error()}}
	}
	if reason := v.Policy.Check(unit, csr, bag[KeyProfile], v.Units); reason != "" {
		return RejectCSR{Unit: unit, Rejection: Rejection{CSRDigest: digest, Reason: reason}}
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
