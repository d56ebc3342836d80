package protocol

import (
	"crypto/x509"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
)

// Cancelling a rotation under way (`tlsrelay ca rotate --cancel`) takes the group back to
// the CA it moves from. Every unit has trusted that CA throughout, so the way back needs
// no trust phase: the leader turns the record into a reissue phase from the new CA to the
// old one (Cancelled), and swaps the sealed keys so that the old CA's is the group's. The
// rotation machinery does the rest: the leader imports the old CA from its sealed copy,
// units holding a certificate of the new CA renew under the old one, and the new CA
// leaves the bundle once no unit presents one of its certificates.
//
// The leader refuses (Rotation.CancelRefused) what it cannot undo: a leader whose signer
// holds the new CA needs the old CA's sealed key (ca_seal) to import it; an old CA near
// its expiry would be rotated away again at once; a cancelled rotation is not cancelled
// back, since the units have not all been asked to trust the CA it left.

// cancelRequested: a `ca rotate --cancel` the leader has not acted on.
func (v View) cancelRequested() bool {
	return v.CA.Cancel != "" && v.CA.Cancel != v.LeaderData[KeyCACancel]
}

// planCancel acts on a cancel request for rot: it turns rot back, or records why not.
// Either way the request is acted on, and the next decision goes on from the record.
func planCancel(v View, signer *x509.Certificate, pub []*x509.Certificate, rot Rotation) caPlan {
	kv := map[string]string{KeyCACancel: v.CA.Cancel}
	if why := cancelRefusal(v, signer, pub, rot); why != "" {
		rot.CancelRefused = why
		kv[KeyCARotation] = rot.Encode()
		return caPlan{actions: []Action{SetLeaderData{KV: kv}}, state: rot.describe()}
	}
	back := Rotation{Phase: PhaseReissue, From: rot.To, To: rot.From, Since: v.Now, ReissueSince: v.Now, Cancelled: true,
		Reason: "cancelled (tlsrelay ca rotate --cancel): back to the CA " + short(rot.From) + " from " + short(rot.To)}
	kv[KeyCARotation] = back.Encode()
	kv[KeyCASealed], kv[KeyCASealedFrom] = v.LeaderData[KeyCASealedFrom], v.LeaderData[KeyCASealed]
	return caPlan{actions: []Action{SetLeaderData{KV: kv}}, state: back.describe()}
}

// cancelRefusal says why the leader cannot take the group back from rot, or "".
func cancelRefusal(v View, signer *x509.Certificate, pub []*x509.Certificate, rot Rotation) string {
	from := byFingerprint(pub, rot.From)
	sealed, _ := caseal.Decode(v.LeaderData[KeyCASealedFrom])
	switch {
	case rot.Cancelled:
		return "it is itself a cancel: let it end, then request a new rotation"
	case from == nil || !from.NotAfter.After(v.Now):
		return "the CA it moves from is no longer in the group's bundle, or has expired"
	case expiring(v, from):
		return "the CA it moves from expires at " + from.NotAfter.UTC().Format(time.RFC3339) +
			" (ca.rotate_before): the group would rotate away from it again at once"
	case signer.Equal(from):
		return "" // this leader's signer holds the old CA: nothing to import
	case !v.Memory.Signer.Imports:
		return "this leader's signer holds the new CA and cannot import the old one (it claims no ca_import)"
	case !v.CASeal:
		return "this leader's signer holds the new CA, and it has no ca_seal key to import the old one"
	case sealed.CASHA256 != rot.From:
		return "leader data holds no sealed key of the CA it moves from (the rotation began without ca_seal, or before tlsrelay kept one)"
	}
	return ""
}

func short(fingerprint string) string { return fingerprint[:min(16, len(fingerprint))] }
