package protocol

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// planReferencedCA: with ca.ref the group's CA is the one the secrets backend holds, and
// the leader's signer must hold it before it decides anything else. It returns the action
// that brings the signer there, or the problem that stops it; neither once it holds it.
func planReferencedCA(v View) (Action, string) {
	m := v.Memory
	if m.ReferencedCA == "" {
		return LoadReferencedCA{Ref: v.CA.Ref}, ""
	}
	want, err := v.Parsed.certsAt(slotKey{place: own, key: ownReferencedCA}, m.ReferencedCA)
	if err != nil {
		return nil, fmt.Sprintf("not signing: the CA from ca.ref %s: %v", v.CA.Ref, err)
	}
	if have, err := v.signerCerts(); err == nil && have[0].Equal(want[0]) {
		return nil, ""
	}
	fp := caseal.Fingerprint(want[0].Raw)
	if m.ImportedRef == fp {
		return nil, fmt.Sprintf("not signing: the signer was given the CA %s from ca.ref %s but still reports another CA",
			fp[:16], v.CA.Ref)
	}
	return ImportReferencedCA{Ref: v.CA.Ref, CASHA256: fp}, ""
}

// signingValidity is the lifetime the leader signs for, from the signer's CA.
func signingValidity(v View, pol *policy.Policy) (time.Duration, error) {
	certs, err := v.signerCerts()
	if err != nil {
		return 0, fmt.Errorf("the signer's CA: %w", err)
	}
	return SigningValidity(pol, v.Want.Validity, certs[0], v.Now)
}

// SigningValidity is the lifetime a leaf is signed for: the asked one capped by the
// policy's max_validity and by the signing CA's own expiry, so that no leaf outlives its
// CA. The leader and `tlsrelay sign` both sign for it.
func SigningValidity(pol *policy.Policy, asked time.Duration, ca *x509.Certificate, now time.Time) (time.Duration, error) {
	if ca.NotAfter.Sub(now) <= certutil.Backdate {
		return 0, fmt.Errorf("the signer's CA %q expires at %s: nothing can be signed with it",
			ca.Subject.CommonName, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	v := pol.Validity(asked, ca, now)
	if v <= 0 {
		return 0, fmt.Errorf("a validity of %s signs nothing", asked)
	}
	return v, nil
}

// RemoteCARecheck is how often a leader whose signer's CA is remote loads it again, to
// follow its service to another CA, unless CATerms.RemoteRecheck says.
const RemoteCARecheck = time.Minute

// cannotRotate says why this signer cannot give the group a new CA, or "".
func (t SignerTerms) cannotRotate() string {
	switch {
	case t.Custody == sdk.CustodyRemote:
		return "the signer's CA is remote: rotate it at its service, and the group follows"
	case !t.Imports && !t.Generate:
		return fmt.Sprintf("the signer (custody %s) can neither import a CA nor generate one (it claims neither ca_import nor ca_generate)", t.Custody)
	}
	return ""
}

// recordBlocked keeps KeyCARotationBlocked at blocked, and answers a `ca rotate` request
// the signer cannot carry out (KeyCARotateRefused).
func recordBlocked(v View, blocked string) []Action {
	kv := map[string]string{}
	if v.LeaderData[KeyCARotationBlocked] != blocked && !v.requested() {
		kv[KeyCARotationBlocked] = blocked
	}
	if v.requested() && blocked != "" {
		kv[KeyCARequest], kv[KeyCARotateRefused] = v.CA.Request, blocked
	}
	if len(kv) == 0 {
		return nil
	}
	return []Action{SetLeaderData{KV: kv}}
}

// remoteRecheck: a remote CA is due to be loaded again.
func remoteRecheck(v View) (due bool, at time.Time) {
	m := v.Memory
	if m.Signer.Custody != sdk.CustodyRemote || m.LoadedAt.IsZero() {
		return false, time.Time{}
	}
	every := v.CA.RemoteRecheck
	if every <= 0 {
		every = RemoteCARecheck
	}
	at = m.LoadedAt.Add(every)
	return !v.Now.Before(at), at
}
