package protocol

import (
	"slices"
	"strings"
	"time"
)

// Issued is a certificate the group issued to a unit, as the leader records it: what
// the unit's departure revokes.
type Issued struct {
	Serial   string    `json:"serial"` // hex
	NotAfter time.Time `json:"not_after"`
	// Names are its DNS names (normalised) and IPs: a certificate holds its names until
	// it expires or is revoked, the ones it replaced included (see claims.go). A record
	// an earlier version wrote has none.
	Names []string `json:"names,omitempty"`
}

// decodeIssued reads IssuedKey.
func decodeIssued(s string) []Issued { return decodeList[Issued](s) }

// issuedRecords decodes unit's IssuedKey once a value (View.Parsed); the list is shared:
// read it only.
func (v View) issuedRecords(unit string) []Issued {
	var list []Issued
	key := IssuedKey(unit)
	v.Parsed.use(slotKey{place: inLeaderData, key: key}, v.LeaderData[key], func(s *slot) {
		if !s.issuedDone {
			s.issued, s.issuedDone = decodeIssued(s.value), true
		}
		list = s.issued
	})
	return list
}

func encodeIssued(list []Issued) string { return encodeList(list) }

// issuedTo lists the unexpired certificates issued to unit: the record at IssuedKey and
// the certificate at SignedCertificateKey, ordered by serial. What the unit reports is
// never part of it: a departure revokes what was issued, whatever the unit holds.
func issuedTo(v View, unit string) []Issued {
	list := slices.DeleteFunc(slices.Clone(v.issuedRecords(unit)), func(i Issued) bool { return !v.Now.Before(i.NotAfter) })
	if v.LeaderData[SignedCertificateKey(unit)] != "" {
		if certs, err := v.leaderCerts(SignedCertificateKey(unit)); err == nil && v.Now.Before(certs[0].NotAfter) {
			serial := certs[0].SerialNumber.Text(16)
			if !slices.ContainsFunc(list, func(i Issued) bool { return i.Serial == serial }) {
				list = append(list, Issued{Serial: serial, NotAfter: certs[0].NotAfter, Names: namesOf(certs[0].DNSNames, certs[0].IPAddresses)})
			}
		}
	}
	slices.SortFunc(list, func(a, b Issued) int { return compareHex(a.Serial, b.Serial) })
	return list
}

// planDepartures (leader) keeps the list of revocations. A unit that departs has every
// unexpired certificate issued to it recorded, to take effect ca.revoke_departed_after
// later; until then its leader data stays, so a unit back in time (a network blip, a
// restart) keeps its certificate and is not signed another. Once the published CRL
// lists them the unit's leader data is forgotten. The unit's note changes that:
// NoteGone revokes at once; NoteBack revokes nothing, and the unit's leader data stays
// until its certificates expire. Revocations leave the list when their certificate
// expires.
func planDepartures(v View, revoke []Revocation) (actions []Action, list []Revocation) {
	after := v.CRL.RevokeAfter
	list, recorded := v.revocations()
	index := make(map[string]int, len(list)) // by serial: the cost of a departure does not grow with the list
	for i, r := range list {
		index[r.Serial] = i
	}
	for _, r := range revoke {
		if i, ok := index[r.Serial]; ok {
			if !list[i].Retired {
				list[i].Retired, list[i].Departed, list[i].Reason = true, r.Departed, r.Reason
			}
			continue
		}
		list = append(list, r)
		index[r.Serial] = len(list) - 1
	}
	departed := departedUnits(v)
	for _, unit := range departed {
		note := v.Away[unit]
		if note == NoteBack {
			continue
		}
		for _, is := range issuedTo(v, unit) {
			i, ok := index[is.Serial]
			if !ok {
				list = append(list, Revocation{Unit: unit, Serial: is.Serial, NotAfter: is.NotAfter, Departed: v.departedAt(unit)})
				i = len(list) - 1
				index[is.Serial] = i
			}
			if note == NoteGone && !list[i].Retired {
				list[i].Retired, list[i].Departed = true, v.departedAt(unit)
			}
		}
	}
	list = slices.DeleteFunc(list, func(r Revocation) bool {
		_, back := v.Units[r.Unit]
		planned := v.Away[r.Unit] == NoteBack
		return !v.Now.Before(r.NotAfter) || (back || planned) && !r.effective(v.Now, after)
	})
	slices.SortFunc(list, func(a, b Revocation) int { return compareHex(a.Serial, b.Serial) })
	if kv := revocationWrites(v.LeaderData, recorded, list); len(kv) > 0 {
		actions = append(actions, SetLeaderData{KV: kv})
	}
	// A departed unit's leader data is what holds its names (claims.go): it is forgotten
	// once the published CRL lists every certificate it was issued that has not expired.
	// Until then (a revocation pending, or not yet signed into the CRL; a unit that said
	// it will be back; a signer that signs no CRL) its certificates are valid, and so
	// are its names.
	revoked := v.crlSerials()
	for _, unit := range departed {
		if !slices.ContainsFunc(issuedTo(v, unit), func(i Issued) bool { return !revoked[i.Serial] }) {
			actions = append(actions, ForgetUnit{Unit: unit})
		}
	}
	return actions, list
}

// departedAt is when unit left: when the store saw it go, or now if it did not (a leader
// that read the relation after), never later than now. A leader whose decisions were held
// up (a store that answered slowly) counts the delay from the departure, not from itself.
func (v View) departedAt(unit string) time.Time {
	if at, ok := v.Left[unit]; ok && at.Before(v.Now) {
		return at
	}
	return v.Now
}

// departedUnits lists units that have leader data but no longer a bag.
func departedUnits(v View) []string {
	var gone []string
	for key := range v.LeaderData {
		unit, ok := perUnitKey(key)
		if _, joined := v.Units[unit]; ok && !joined {
			gone = append(gone, unit)
		}
	}
	slices.Sort(gone)
	return slices.Compact(gone)
}

// perUnitKey returns the unit a per-unit leader-data key is of.
func perUnitKey(key string) (string, bool) {
	for _, suffix := range []string{certificateSuffix, rejectionSuffix, issuedSuffix} {
		if unit, ok := strings.CutSuffix(key, suffix); ok && unit != "" {
			return unit, true
		}
	}
	return "", false
}

// revocationWrites is what to write for list, ordered by serial, to be what leader
// data records (recorded, by unit): each unit's list at its RevocationKey where it
// changed, "" for a unit with none left, and KeyRevoked ("") once its entries are each
// under their unit's key.
func revocationWrites(leaderData map[string]string, recorded map[string][]Revocation, list []Revocation) map[string]string {
	byUnit := map[string][]Revocation{}
	for _, r := range list {
		byUnit[r.Unit] = append(byUnit[r.Unit], r)
	}
	kv := map[string]string{}
	for unit, revs := range byUnit {
		if !slices.EqualFunc(revs, recorded[unit], sameRevocation) {
			kv[RevocationKey(unit)] = encodeRevocations(revs)
		}
	}
	for unit := range recorded {
		if len(byUnit[unit]) == 0 {
			kv[RevocationKey(unit)] = ""
		}
	}
	if leaderData[KeyRevoked] != "" {
		kv[KeyRevoked] = ""
	}
	return kv
}

func sameRevocation(a, b Revocation) bool {
	return a.Unit == b.Unit && a.Serial == b.Serial && a.NotAfter.Equal(b.NotAfter) && a.Departed.Equal(b.Departed) && a.Retired == b.Retired && a.Reason == b.Reason
}
