// Package status reads a group's state from its relation, as `tlsrelay status` shows it:
// the leader, the CA's fingerprint, and what each unit last published of itself.
package status

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/internal/termsafe"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Group is the JSON shape of `tlsrelay status --json`.
type Group struct {
	Relation string `json:"relation"`
	Leader   string `json:"leader"`
	CASHA256 string `json:"ca_sha256"`
	// CASealed says leader data holds the sealed CA key a new leader needs.
	CASealed bool `json:"ca_sealed"`
	// CABundle lists the fingerprints of every CA the group trusts (more than one while
	// a rotation is under way).
	CABundle []string `json:"ca_bundle"`
	// CAAnchors lists the fingerprints of what units write as ca.crt when the group's CA
	// is an intermediate: the roots above it (the topmost known certificate when
	// CAPartialChain, its root unknown). Empty when every CA in the bundle is its own
	// anchor.
	CAAnchors      []string `json:"ca_anchors,omitempty"`
	CAPartialChain bool     `json:"ca_partial_chain,omitempty"`
	// CASigner is the signer backend holding the group's CA.
	CASigner string `json:"ca_signer"`
	// CACustody is the leader's word on how its signer keeps the CA (sdk.Custody:
	// local, exportable, shared, remote); "" before a leader said.
	CACustody string `json:"ca_custody,omitempty"`
	// CARotationBlocked says why a CA rotation that is due cannot proceed.
	CARotationBlocked string `json:"ca_rotation_blocked,omitempty"`
	// CARotateRefused says why the leader refused the last `ca rotate` request.
	CARotateRefused string `json:"ca_rotate_refused,omitempty"`
	// NoCRL: the leader's signer signs no CRL, so departed units are not revoked.
	NoCRL bool `json:"no_crl,omitempty"`
	// CARotation is the rotation under way, if any.
	CARotation *protocol.Rotation `json:"ca_rotation,omitempty"`
	// CAState is the leader's word on the CA: "steady", or where a rotation stands.
	CAState string `json:"ca_state"`
	// Noisy is the leader's word on units that write their bags more often than
	// protocol.WriteBudget a minute.
	Noisy []string `json:"noisy,omitempty"`
	Units []Unit   `json:"units"`
	// Alarms are the etcd cluster's alarms (a full backend refuses every write), with
	// the remedy; set by the caller, which reaches etcd.
	Alarms []string `json:"alarms,omitempty"`
	// Etcd is etcd's database as its members report it; set by the caller.
	Etcd *etcd.DBHealth `json:"etcd,omitempty"`
	// Departed lists units that left while the group still answers for certificates
	// issued to them: revocations pending or in force, or a note that they will be back.
	Departed []Departed `json:"departed"`
}

// Departed is a unit that is not joined, as the leader keeps it.
type Departed struct {
	Unit string `json:"unit"`
	// Note is what the unit said as it left: "back" (its certificates are not revoked),
	// "gone" (revoked at once), or none (revoked ca.revoke_departed_after after it left).
	Note string `json:"note,omitempty"`
	// Since is when the leader recorded the departure, if it did.
	Since string `json:"since,omitempty"`
	// Revoked and Pending are the serials issued to it that the CRL lists, and those it
	// will list if the unit is not back in time.
	Revoked []string `json:"revoked"`
	Pending []string `json:"pending"`
}

// Unit is one unit's published status.
type Unit struct {
	Unit     string `json:"unit"`
	State    string `json:"state"`
	Serial   string `json:"serial"`
	NotAfter string `json:"not_after"`
	// Error is the unit's last failure, the leader's reason not to sign, or the
	// leader's rejection of its CSR.
	Error string `json:"error"`
}

// FromSnapshot reads a whole-relation snapshot (an Observer's).
func FromSnapshot(relationName string, s relation.Snapshot) Group {
	g := Group{Relation: relationName, Leader: s.Leader, Units: []Unit{}}
	if certs, err := certutil.ParseCertificates([]byte(s.LeaderData[protocol.KeyCA])); err == nil {
		g.CASHA256 = caseal.Fingerprint(certs[0].Raw)
	}
	_, g.CASealed = caseal.Decode(s.LeaderData[protocol.KeyCASealed])
	g.CABundle = []string{}
	if trusts := protocol.TrustsOf(s.LeaderData[protocol.KeyCA]); trusts != "" {
		g.CABundle = strings.Split(trusts, ",")
	}
	if file, partial := protocol.CAFile(s.LeaderData[protocol.KeyCA], s.LeaderData[protocol.KeyCAChain]); file != s.LeaderData[protocol.KeyCA] {
		g.CAAnchors, g.CAPartialChain = strings.Split(protocol.TrustsOf(file), ","), partial
	}
	g.CASigner = s.LeaderData[protocol.KeyCASigner]
	if r, ok := protocol.DecodeRotation(s.LeaderData[protocol.KeyCARotation]); ok {
		g.CARotation = &r
	}
	leader := protocol.DecodeUnitStatus(s.Units[s.Leader])
	g.CAState, g.CACustody, g.NoCRL = leader.CAState, leader.Custody, leader.NoCRL
	g.CARotationBlocked, g.CARotateRefused = s.LeaderData[protocol.KeyCARotationBlocked], s.LeaderData[protocol.KeyCARotateRefused]
	if leader.Noisy != "" {
		g.Noisy = strings.Split(leader.Noisy, ",")
	}
	for name, bag := range s.Units {
		st := protocol.DecodeUnitStatus(bag)
		u := Unit{Unit: name, State: string(st.State), Serial: st.Serial, Error: st.Error}
		if !st.NotAfter.IsZero() {
			u.NotAfter = st.NotAfter.UTC().Format(time.RFC3339)
		}
		if st.State == protocol.StateRejected && u.Error == "" {
			u.Error = st.Detail
		}
		if over := s.Oversized[name]; over != "" {
			u.Error = strings.TrimSuffix("bag values over their cap, not read ("+over+"); "+u.Error, "; ")
		}
		g.Units = append(g.Units, u)
	}
	slices.SortFunc(g.Units, func(a, b Unit) int { return compareUnits(a.Unit, b.Unit) })
	g.Departed = departedOf(s)
	return g
}

// departedOf lists the units, not joined, that the revocations or a note name.
func departedOf(s relation.Snapshot) []Departed {
	inCRL := map[string]bool{}
	if crl, err := certutil.ParseCRL([]byte(s.LeaderData[protocol.KeyCRL])); err == nil {
		for _, r := range crl.RevokedCertificateEntries {
			inCRL[r.SerialNumber.Text(16)] = true
		}
	}
	byUnit := map[string]*Departed{}
	of := func(unit string) *Departed {
		if byUnit[unit] == nil {
			byUnit[unit] = &Departed{Unit: unit, Revoked: []string{}, Pending: []string{}}
		}
		return byUnit[unit]
	}
	for _, r := range protocol.RevocationsOf(s.LeaderData) {
		if _, joined := s.Units[r.Unit]; joined {
			continue // back in time: the revocation is about to be dropped
		}
		d := of(r.Unit)
		if inCRL[r.Serial] {
			d.Revoked = append(d.Revoked, r.Serial)
		} else {
			d.Pending = append(d.Pending, r.Serial)
		}
		if since := r.Departed.UTC().Format(time.RFC3339); d.Since == "" || since < d.Since {
			d.Since = since
		}
	}
	for unit, note := range s.Away {
		if _, joined := s.Units[unit]; !joined {
			of(unit).Note = note
		}
	}
	list := []Departed{}
	for _, d := range byUnit {
		list = append(list, *d)
	}
	slices.SortFunc(list, func(a, b Departed) int { return compareUnits(a.Unit, b.Unit) })
	return list
}

// compareUnits orders units by application, then number: db/2 before db/10.
func compareUnits(a, b string) int {
	appA, numA, _ := strings.Cut(a, "/")
	appB, numB, _ := strings.Cut(b, "/")
	if c := strings.Compare(appA, appB); c != 0 {
		return c
	}
	na, errA := strconv.Atoi(numA)
	nb, errB := strconv.Atoi(numB)
	if errA != nil || errB != nil {
		return strings.Compare(numA, numB)
	}
	return na - nb
}

// WriteJSON writes the group as JSON.
func (g Group) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(g)
}

// WriteTable writes the group for a person.
func (g Group) WriteTable(w io.Writer) error {
	fp := g.CASHA256
	if len(fp) > 16 {
		fp = fp[:16]
	}
	// Every field is shown escaped: units write their bags, and no value may act on the
	// terminal or forge a row.
	e := termsafe.Escape
	fmt.Fprintf(w, "relation %s, leader %s, CA %s, %s\n", e(g.Relation), orNone(e(g.Leader)), orNone(e(fp)), g.failover())
	fmt.Fprintf(w, "CA: %s (signer %s, %d CAs trusted)\n", orNone(e(g.CAState)), orNone(e(g.CASigner)), len(g.CABundle))
	if len(g.CAAnchors) > 0 {
		fmt.Fprintf(w, "CA chain: the group's CA is an intermediate; units trust %d anchor(s) in ca.crt and send the intermediates in tls.crt\n", len(g.CAAnchors))
	}
	if g.CAPartialChain {
		fmt.Fprintf(w, "CA chain partial: the root above the group's CA is unknown (add it to ca.ref's intermediates); ca.crt holds the topmost certificate known, which consumers must accept as an anchor (OpenSSL: -partial_chain)\n")
	}
	if g.CARotationBlocked != "" {
		fmt.Fprintf(w, "CA rotation blocked: %s (signing goes on)\n", e(g.CARotationBlocked))
	}
	if g.NoCRL {
		fmt.Fprintf(w, "REVOCATION OFF: the signer %s signs no CRL: departed units are recorded but not revoked\n", orNone(e(g.CASigner)))
	}
	if g.CARotateRefused != "" {
		fmt.Fprintf(w, "last ca rotate refused: %s\n", e(g.CARotateRefused))
	}
	for _, a := range g.Alarms {
		fmt.Fprintf(w, "ALARM: %s\n", a)
	}
	if h := g.Etcd; h != nil {
		fmt.Fprintf(w, "etcd: %s\n", DescribeDB(*h))
	}
	if len(g.Noisy) > 0 {
		fmt.Fprintf(w, "units writing their bags more than %d times a minute: %s\n", protocol.WriteBudget, e(strings.Join(g.Noisy, ", ")))
	}
	fmt.Fprintln(w)
	if len(g.Units) == 0 {
		// Presence and bags are bound to the units' leases: a stopped group shows none.
		fmt.Fprintln(w, "no units joined: units appear while their agents run (after 'tlsrelay up' ends, its units have left)")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "UNIT\tSTATE\tSERIAL\tNOT AFTER\tERROR")
		for _, u := range g.Units {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e(u.Unit), orNone(e(u.State)), e(u.Serial), e(u.NotAfter), e(u.Error))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(g.Departed) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPARTED\tNOTE\tSINCE\tREVOKED\tPENDING REVOCATION")
	for _, d := range g.Departed {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e(d.Unit), orNone(e(d.Note)), d.Since, e(strings.Join(d.Revoked, ",")), e(strings.Join(d.Pending, ",")))
	}
	return tw.Flush()
}

// DescribeDB is etcd's database in a line: its size against the quota, and whether
// history is compacted (an external etcd keeps every revision unless told to compact).
func DescribeDB(h etcd.DBHealth) string {
	mib := func(b int64) string {
		switch {
		case b >= 1<<30:
			return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
		case b >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
		}
		return fmt.Sprintf("%d KiB", b>>10)
	}
	line := fmt.Sprintf("database %s (%s in use)", mib(h.DBSize), mib(h.DBSizeInUse))
	if h.QuotaBytes > 0 {
		line += fmt.Sprintf(" of a %s quota (%.0f%%)", mib(h.QuotaBytes), 100*float64(h.DBSize)/float64(h.QuotaBytes))
	}
	line += fmt.Sprintf(", revision %d, ", h.Revision)
	switch {
	case h.CompactRevision == 0 && h.Embedded:
		return line + "not compacted yet (the embedded etcd compacts history older than an hour)"
	case h.CompactRevision == 0:
		return line + "never compacted: its history grows until something compacts it (run etcd with --auto-compaction-retention, e.g. 1h)"
	}
	return line + fmt.Sprintf("compacted up to %d", h.CompactRevision)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// failover says how a leader on another host would sign with the group's CA, as the
// leader's signer keeps it.
func (g Group) failover() string {
	switch sdk.Custody(g.CACustody) {
	case sdk.CustodyShared:
		return "CA key shared by every leader's signer (a new leader signs with it as it is)"
	case sdk.CustodyRemote:
		return "CA remote (every leader signs through its service)"
	case sdk.CustodyLocal:
		return "CA key local to the leader's signer (a leader on another host cannot take over the CA)"
	}
	if g.CASealed {
		return "CA key sealed in leader data"
	}
	return "no sealed CA key (a leader on another host cannot take over the CA)"
}
