package protocol

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// The relation's keys: the contract between versions of tlsrelay, every one of them here.
// A store learns which of them matter to it from Schema.

// Fields of a unit's bag that the leader signs from.
const (
	KeyCSR     = "csr"     // the unit's pending CSR (PEM)
	KeyProfile = "profile" // the profile it asks for: server, client or peer
)

// Fields of a unit's bag that report its status (UnitStatus): for `tlsrelay status`,
// `up`'s progress and `ca rotate`; the leader reads KeySerial and KeyTrusts (revocation
// and CA rotation wait on them).
const (
	KeyState    = "state"
	KeyDetail   = "detail"
	KeySerial   = "serial"     // of the installed certificate, hex
	KeyNotAfter = "not_after"  // RFC 3339
	KeyError    = "error"      // the last failure, empty once a step succeeds
	KeyTrusts   = "ca_trusts"  // the SHA-256 fingerprints of the CAs in its ca.crt, comma-separated
	KeyCAState  = "ca_state"   // the leader's Decision.CAState
	KeyNoisy    = "noisy"      // the leader's word: units over their WriteBudget
	KeyCustody  = "ca_custody" // the leader's word: how its signer keeps the CA (sdk.Custody)
	KeyNoCRL    = "no_crl"     // the leader's word: "true" when its signer signs no CRL
)

// Leader data that every unit reads.
const (
	KeyCA       = "ca"        // the group's CA bundle, its signing CA first
	KeyCASealed = "ca_sealed" // caseal.Sealed: the CA key, for the next leader
	KeyCRL      = "ca_crl"    // the CRL over the revocations in force; every unit writes it as ca.crl
	// KeyCAChain holds the certificates above the group's signing CAs that the leader
	// knows (intermediates, and the root when known), for a group whose CA is an
	// intermediate; empty when every signing CA is self-signed (chain.go).
	KeyCAChain = "ca_chain"
	// KeyCAChainCRL holds the CRLs of the certificates in KeyCAChain that the leader was
	// given (ca.chain_crl_file): units write them in ca.crl after the group's.
	KeyCAChainCRL = "ca_chain_crl"
)

// Leader data that only leaders read.
const (
	KeyRevoked    = "crl_revoked"       // earlier versions' []Revocation of the whole group; read, and moved to RevocationKey
	KeyCASigner   = "ca_signer"         // the signer backend that holds the group's CA
	KeyCARotation = "ca_rotation"       // a Rotation, while one is under way
	KeyCARequest  = "ca_rotate_request" // the last `ca rotate` request the leader acted on
	KeyCACancel   = "ca_cancel_request" // the last `ca rotate --cancel` request the leader acted on
	// KeyCARotateRefused says why the leader did not act on the last `ca rotate`
	// request (KeyCARequest names it): its signer cannot make a new CA.
	KeyCARotateRefused = "ca_rotate_refused"
	// KeyCARotationBlocked says why a rotation that is due (the CA nears its expiry)
	// cannot proceed; the leader signs on meanwhile.
	KeyCARotationBlocked = "ca_rotation_blocked"
	// KeyCASealedFrom is the sealed key of the CA a rotation moves from, kept while the
	// rotation is under way so that a cancel can take the group back to it.
	KeyCASealedFrom = "ca_sealed_from"
)

// Per-unit leader data: a unit reads its own certificate and rejection; only leaders
// read what was issued to it before.
const (
	certificateSuffix = "_signed_certificate"
	rejectionSuffix   = "_rejected"
	issuedSuffix      = "_issued"
	revokedSuffix     = "_revoked"
)

// UnitKeys are the leader-data keys a unit has: its certificate, its rejection, what it
// was issued before. A departed unit is forgotten when they are deleted (ForgetUnit);
// its revocations (RevocationKey) stay until its certificates expire.
func UnitKeys(unit string) []string {
	return []string{SignedCertificateKey(unit), RejectionKey(unit), IssuedKey(unit)}
}

// SignedCertificateKey is the leader-data key of a unit's certificate chain (PEM).
func SignedCertificateKey(unit string) string { return unit + certificateSuffix }

// RejectionKey is the leader-data key of the leader's refusal of a unit's CSR (Rejection).
func RejectionKey(unit string) string { return unit + rejectionSuffix }

// IssuedKey is the leader-data key of the unexpired certificates issued to a unit before
// the one at SignedCertificateKey ([]Issued): what a departure revokes beside it.
func IssuedKey(unit string) string { return unit + issuedSuffix }

// RevocationKey is the leader-data key of a departed unit's revocations
// ([]Revocation), in force or pending, kept until its certificates expire. One key a
// unit, so that a departure writes what it changes: one list of the whole group grew
// with every revocation in force, and past ~10,000 a write of it with the CRL no longer
// fitted in one etcd request (docs/SCALING.md).
func RevocationKey(unit string) string { return unit + revokedSuffix }

// IsRevocationKey says whether key is a RevocationKey, or the group's list of earlier
// versions (KeyRevoked).
func IsRevocationKey(key string) bool {
	return key == KeyRevoked || strings.HasSuffix(key, revokedSuffix) && len(key) > len(revokedSuffix)
}

// The notes a unit leaves when it departs (relation.Member.LeaveWithNote), which the
// leader reads in View.Away. A unit that departs without one (a crash, a lost host, a
// partition) is revoked ca.revoke_departed_after later.
const (
	// NoteBack: the unit stopped and will be back (an agent stopped by SIGTERM, `agent
	// --once`): its certificates are not revoked; they expire.
	NoteBack = "back"
	// NoteGone: the unit is decommissioned (`tlsrelay agent --leave`, `tlsrelay revoke`):
	// its certificates are revoked at once.
	NoteGone = "gone"
)

// RequestRotateCA is the relation request `tlsrelay ca rotate` writes; its value is an
// identifier the leader records under KeyCARequest once acted on.
const RequestRotateCA = "ca_rotate"

// RequestCancelRotation is the relation request `tlsrelay ca rotate --cancel` writes for
// a rotation under way; its value is an identifier the leader records under KeyCACancel
// once acted on (Rotation.Cancelled, or Rotation.CancelRefused says how).
const RequestCancelRotation = "ca_rotate_cancel"

// Schema tells a relation store which of these keys a unit that does not lead reads,
// and which bag fields wake a leader at once: those it signs from.
func Schema() relation.Schema {
	return relation.Schema{
		GroupKeys:       []string{KeyCA, KeyCASealed, KeyCRL, KeyCAChain, KeyCAChainCRL},
		UnitKeySuffixes: []string{certificateSuffix, rejectionSuffix},
		WakeFields:      []string{KeyCSR, KeyProfile},
		BagFields:       bagFields,
		WriteBudget:     WriteBudget,
	}
}

// bagFields are the fields of a unit's bag and their caps: a CSR up to the largest
// policy.max_csr_bytes may allow (the policy refuses more than the configured one),
// status fields a few KiB. A relation store keeps nothing
// else of a bag, so a member writing more (unknown keys, megabytes) costs no other unit
// memory.
var bagFields = map[string]int{
	KeyCSR: policy.LimitCSRBytes, KeyProfile: 16,
	KeyState: 128, KeyDetail: 4 << 10, KeySerial: 128, KeyNotAfter: 64, KeyError: 4 << 10, KeyTrusts: 4 << 10, KeyCAState: 4 << 10, KeyNoisy: 4 << 10, KeyCustody: 32, KeyNoCRL: 8,
}

// WriteBudget is how many writes of its bag a minute a unit may make before the leader
// names it (status, tlsrelay_unit_writes_over_budget): an honest unit writes a few as
// it changes state, and a failing one its error at most every 15 s.
const WriteBudget = 120

// Rejection is the value at RejectionKey: which CSR was refused and why.
type Rejection struct {
	CSRDigest string `json:"csr_sha256"`
	Reason    string `json:"reason"`
	// Rule is the policy rule that refused the CSR (policy.Rule), or RuleSigner.
	Rule string `json:"rule,omitempty"`
	// Profile is the profile the CSR was sent with, At when it was refused (the
	// leader's clock): a unit sends a new CSR for another profile at once, and for the
	// same one RejectionRetry later (a name another unit held may be free by then).
	Profile string    `json:"profile,omitempty"`
	At      time.Time `json:"at,omitzero"`
	// Policy is the fingerprint of the leader's rules that refused it
	// (policy.Policy.Fingerprint): under other rules the CSR is judged again.
	Policy string `json:"policy,omitempty"`
	// Recorded is when the audit trail last recorded a refusal of the unit: refusals
	// within RejectionRetry of it are repeats (RejectCSR.Repeat), one record a window.
	Recorded time.Time `json:"recorded,omitzero"`
}

// RejectionRetry is how long a unit whose CSR was refused waits before it makes a new
// one with the same config: what refused it may have changed (a name another unit held,
// the leader's policy), and a CSR that keeps being refused costs one key and one
// refusal each time.
const RejectionRetry = 10 * time.Minute

// RuleSigner is a Rejection's Rule when the signer backend refused the CSR.
const RuleSigner = "signer"

// Encode returns the rejection as stored in leader data.
func (r Rejection) Encode() string {
	b, _ := json.Marshal(r) // strings and a time: cannot fail
	return string(b)
}

// DecodeRejection reads a RejectionKey value; false when absent or unreadable.
func DecodeRejection(s string) (Rejection, bool) {
	var r Rejection
	if s == "" || json.Unmarshal([]byte(s), &r) != nil {
		return Rejection{}, false
	}
	return r, true
}

// UnitStatus is what a unit reports of itself in its bag. Its one codec (Fields,
// DecodeUnitStatus) serves the agent that writes it and status, up and `ca rotate`,
// which read it.
type UnitStatus struct {
	State    State
	Detail   string
	Serial   string // of the installed certificate, hex
	NotAfter time.Time
	Error    string // the last step's failure, or why the leader does not sign
	Trusts   string // TrustsOf the installed ca.crt
	CAState  string // the leader's word on the group's CA
	Noisy    string // the leader's word on units over their WriteBudget, comma-separated
	Custody  string // the leader's word on how its signer keeps the CA (sdk.Custody)
	// NoCRL: the leader's signer signs no CRL, so departed units are recorded but not
	// revoked.
	NoCRL bool
}

// Fields returns the status as bag fields; an empty value deletes the field.
func (s UnitStatus) Fields() map[string]string {
	notAfter := ""
	if !s.NotAfter.IsZero() {
		notAfter = s.NotAfter.UTC().Format(time.RFC3339)
	}
	return map[string]string{KeyState: string(s.State), KeyDetail: s.Detail, KeySerial: s.Serial,
		KeyNotAfter: notAfter, KeyError: s.Error, KeyTrusts: s.Trusts, KeyCAState: s.CAState, KeyNoisy: s.Noisy, KeyCustody: s.Custody, KeyNoCRL: boolField(s.NoCRL)}
}

func boolField(b bool) string {
	if b {
		return "true"
	}
	return ""
}

// DecodeUnitStatus reads the status a unit published in its bag; a field that does not
// parse reads as unset.
func DecodeUnitStatus(bag map[string]string) UnitStatus {
	s := UnitStatus{State: State(bag[KeyState]), Detail: bag[KeyDetail], Serial: bag[KeySerial],
		Error: bag[KeyError], Trusts: bag[KeyTrusts], CAState: bag[KeyCAState], Noisy: bag[KeyNoisy], Custody: bag[KeyCustody], NoCRL: bag[KeyNoCRL] == "true"}
	s.NotAfter, _ = time.Parse(time.RFC3339, bag[KeyNotAfter])
	return s
}
