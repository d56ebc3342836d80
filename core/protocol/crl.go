package protocol

import (
	"cmp"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// CRLLifetime is how long a CRL is valid (its NextUpdate); the leader signs a new one
// when less than half of that is left, so a verifier never holds an expired list.
const CRLLifetime = 24 * time.Hour

// Revocation is one departed unit's certificate.
type Revocation struct {
	Unit     string    `json:"unit"`
	Serial   string    `json:"serial"` // hex
	NotAfter time.Time `json:"not_after"`
	Departed time.Time `json:"departed"`
	// Retired: the unit left for good (NoteGone), or a rotation ended without it, so the
	// revocation is in force at once.
	Retired bool `json:"retired,omitempty"`
	// Reason says why, when it is not the unit's departure (ReasonNotReissued).
	Reason string `json:"reason,omitempty"`
}

// CRLTerms are the leader's terms for revocation.
type CRLTerms struct {
	// RevokeAfter: a departed unit's certificate is revoked this long after it left
	// (ca.revoke_departed_after); a unit back before then keeps its certificate, so a
	// restart revokes nothing.
	RevokeAfter time.Duration
}

// RevocationsOf lists the revocations recorded in leader data, in force or pending,
// ordered by serial: every unit's (RevocationKey), and what an earlier version's
// leader recorded under KeyRevoked.
func RevocationsOf(leaderData map[string]string) []Revocation {
	list, _ := View{LeaderData: leaderData}.revocations()
	return list
}

// revocations is RevocationsOf, each unit's records decoded once a value (View.Parsed;
// nil decodes every time), and the records by unit as leader data holds them.
func (v View) revocations() (list []Revocation, byUnit map[string][]Revocation) {
	byUnit = map[string][]Revocation{}
	seen := map[string]bool{}
	for key, value := range v.LeaderData {
		if !IsRevocationKey(key) {
			continue
		}
		var records []Revocation
		v.Parsed.use(slotKey{place: inLeaderData, key: key}, value, func(s *slot) { records = s.decodeRevocations() })
		if key != KeyRevoked {
			byUnit[strings.TrimSuffix(key, revokedSuffix)] = records
		}
		for _, r := range records {
			if !seen[r.Serial] {
				seen[r.Serial] = true
				list = append(list, r)
			}
		}
	}
	slices.SortFunc(list, func(a, b Revocation) int { return compareHex(a.Serial, b.Serial) })
	return list, byUnit
}

// decodeRevocations reads a RevocationKey (or KeyRevoked).
func decodeRevocations(s string) []Revocation { return decodeList[Revocation](s) }

func encodeRevocations(list []Revocation) string { return encodeList(list) }

// decodeList reads a list the leader keeps in leader data as JSON; a value that does not
// parse is an empty list (the leader writes it again).
func decodeList[T any](s string) []T {
	var list []T
	if s != "" && json.Unmarshal([]byte(s), &list) != nil {
		return nil
	}
	return list
}

// encodeList writes a list for leader data: "" (the key deleted) when it is empty.
func encodeList[T any](list []T) string {
	if len(list) == 0 {
		return ""
	}
	b, _ := json.Marshal(list) // strings, times and flags: cannot fail
	return string(b)
}

// effective says whether a revocation is in force at now.
func (r Revocation) effective(now time.Time, after time.Duration) bool {
	return r.Retired || !now.Before(r.Departed.Add(after))
}

// planRevocations (leader) keeps the list of revocations (planDepartures, with revoke
// added: certificates revoked at once for another reason than a departure) and signs a
// new CRL when the list in effect changed, the CRL is not the signing CA's, or half its
// life is gone. wake is when a pending revocation takes effect or the CRL is due.
func planRevocations(v View, signingCA string, revoke []Revocation) (actions []Action, wake time.Time) {
	after := v.CRL.RevokeAfter
	actions, list := planDepartures(v, revoke)
	if !v.Memory.SignsCRL { // departures are still recorded; no CRL is published
		return actions, time.Time{}
	}
	var inForce []Revocation
	for _, r := range list {
		if r.effective(v.Now, after) {
			inForce = append(inForce, r)
		} else if at := r.Departed.Add(after); wake.IsZero() || at.Before(wake) {
			wake = at
		}
	}
	number, due := v.crlDue(signingCA, inForce)
	if due {
		return append(actions, SignCRL{Revoked: inForce, Number: number, Now: v.Now, CA: signingCA}), wake
	}
	if refresh := v.Now.Add(CRLLifetime / 2); wake.IsZero() || refresh.Before(wake) {
		wake = refresh
	}
	return actions, wake
}

// crlDue says whether the published CRL must be signed again, and the number the next
// one takes (always above the published one's).
func (v View) crlDue(signingCA string, inForce []Revocation) (*big.Int, bool) {
	crlKey := slotKey{place: inLeaderData, key: KeyCRL}
	var crl *x509.RevocationList
	var err error
	v.Parsed.use(crlKey, v.LeaderData[KeyCRL], func(s *slot) { crl, err = s.parseCRL() })
	if err != nil {
		return big.NewInt(1), true
	}
	next := big.NewInt(1)
	if crl.Number != nil {
		next.Add(crl.Number, next)
	}
	ca, err := v.bundleCerts(signingCA)
	signed := false
	if err == nil {
		v.Parsed.use(crlKey, v.LeaderData[KeyCRL], func(s *slot) {
			if crl, err = s.parseCRL(); err == nil {
				signed = s.checkedBy(ca[0], func() error { return crl.CheckSignatureFrom(ca[0]) })
			}
		})
	}
	if !signed || crl.NextUpdate.Sub(v.Now) < CRLLifetime/2 {
		return next, true
	}
	listed := certutil.Revoked(crl)
	if len(listed) != len(inForce) {
		return next, true
	}
	for i, r := range inForce {
		if listed[i].Text(16) != r.Serial {
			return next, true
		}
	}
	return next, false
}

// compareHex orders hex serials by value.
func compareHex(a, b string) int {
	// Serials are written lowercase (big.Int.Text): compared as text, without leading
	// zeros, the longer is larger. Sorting thousands of revocations in every decision
	// parsed two big.Ints a comparison (BenchmarkDecideLeaderWithRevocations).
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if lowerHex(a) && lowerHex(b) {
		if c := cmp.Compare(len(a), len(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	}
	x, _ := new(big.Int).SetString(a, 16)
	y, _ := new(big.Int).SetString(b, 16)
	if x == nil || y == nil {
		return 0
	}
	return x.Cmp(y)
}

// lowerHex says whether s holds only the digits big.Int.Text(16) writes.
func lowerHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// crlRevoked lists the serials a CRL revokes, as hex.
func crlRevoked(crl *x509.RevocationList) []string {
	serials := certutil.Revoked(crl)
	out := make([]string, len(serials))
	for i, s := range serials {
		out[i] = s.Text(16)
	}
	return out
}

// crlRevokes says whether the group's CRL lists serial.
func (v View) crlRevokes(serial *big.Int) bool {
	var crl *x509.RevocationList
	var err error
	v.Parsed.use(slotKey{place: inLeaderData, key: KeyCRL}, v.LeaderData[KeyCRL], func(s *slot) { crl, err = s.parseCRL() })
	if err != nil {
		return false
	}
	return slices.ContainsFunc(certutil.Revoked(crl), func(s *big.Int) bool { return s.Cmp(serial) == 0 })
}
