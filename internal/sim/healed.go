package sim

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// checkHealed runs the invariants that hold once the group has healed: every unit away
// past the delay is revoked (2), no rotation is past its deadline (3), every honest unit
// holds a current certificate of the group's CA unless a name it asks for is another
// unit's (5).
func (w *world) checkHealed() {
	if w.violation != nil {
		return
	}
	w.readCRL()
	h := w.store.head()
	if _, leads := h.leases[h.leader]; !leads {
		return // no leader lives (every leader-eligible unit is gone): nobody signs, revokes or rotates
	}
	if w.p.SignsCRL {
		for _, u := range w.units {
			since, away := w.departedAt[u.name]
			if !away || h.away[u.name] == protocol.NoteBack || w.now.Before(since.Add(w.p.RevokeAfter+time.Minute)) {
				continue
			}
			for _, serial := range w.sortedSerials() {
				rec := w.certs[serial]
				if rec.unit == u.name && rec.published && w.now.Before(rec.cert.NotAfter) && !w.revoked[serial] {
					w.fail(Revoked, "%s has been away since %s, but its serial %s (valid until %s) is not in the CRL",
						u.name, since.Format(time.RFC3339), serial, rec.cert.NotAfter.Format(time.RFC3339))
					return
				}
			}
		}
	}
	if rot, ok := protocol.DecodeRotation(h.leaderData[protocol.KeyCARotation]); ok {
		if late := w.pastDeadline(rot); late != "" {
			w.fail(RotationEnds, "the group has healed, but %s", late)
			return
		}
	}
	bundle, err := certutil.ParseCertificates([]byte(h.leaderData[protocol.KeyCA]))
	if err != nil {
		w.fail(HonestSigned, "the healed group has no CA bundle: %v", err)
		return
	}
	for _, u := range w.units {
		if u.role != Honest || u.proc != running || !u.joined() {
			continue
		}
		if why := w.unsigned(u, bundle[0]); why != "" {
			if excuse := w.heldElsewhere(u); excuse != "" {
				continue
			}
			w.fail(HonestSigned, "%s, honest, %s (state %q: %s)", u.name, why, u.lastDecision.State, u.lastDecision.Detail)
			return
		}
	}
}

// unsigned says why an honest unit does not hold what it should, or "".
func (w *world) unsigned(u *unit, signing *x509.Certificate) string {
	switch {
	case u.cert == nil:
		return "holds no certificate"
	case !w.now.Before(u.cert.NotAfter):
		return "holds an expired certificate"
	case w.revoked[u.cert.SerialNumber.Text(16)]:
		return "holds a revoked certificate"
	case u.cert.CheckSignatureFrom(signing) != nil:
		return "holds a certificate of another CA than the group's signing CA"
	}
	want := u.want()
	if have, sans := certSANs(u.cert), slices.Sorted(slices.Values(want.SANs)); !slices.Equal(have, slices.Compact(sans)) {
		return fmt.Sprintf("holds a certificate for %v, wants %v", have, sans)
	}
	return ""
}

// heldElsewhere names a name u asks for that another unit's valid, unrevoked
// certificate holds: then u is rightly refused.
func (w *world) heldElsewhere(u *unit) string {
	for _, n := range u.want().SANs {
		n = policy.Normalize(n)
		for _, serial := range w.sortedSerials() {
			rec := w.certs[serial]
			if rec.unit != u.name && rec.published && w.now.Before(rec.cert.NotAfter) && !w.revoked[serial] && slices.Contains(rec.names, n) {
				return fmt.Sprintf("%s is held by %s", n, rec.unit)
			}
		}
	}
	return ""
}
