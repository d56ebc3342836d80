package status

import (
	"bytes"
	"encoding/json"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

func TestFromSnapshotAndTable(t *testing.T) {
	ca := pkitest.NewCA(t, "group CA", time.Now())
	snap := relation.Snapshot{Leader: "db/0",
		LeaderData: map[string]string{protocol.KeyCA: ca.PEM},
		Units: map[string]map[string]string{
			"db/10": {protocol.KeyState: string(protocol.StateCertificateAvailable), protocol.KeySerial: "0a"},
			"db/2":  {protocol.KeyState: string(protocol.StateRejected), protocol.KeyDetail: "SAN other.example not allowed"},
		}}
	root := pkitest.NewCA(t, "root", time.Now())
	int1 := root.Intermediate(t, "int1")
	int2 := int1.Intermediate(t, "int2")
	under := func(chain string) relation.Snapshot {
		return relation.Snapshot{Leader: "db/0", LeaderData: map[string]string{protocol.KeyCA: int2.PEM, protocol.KeyCAChain: chain}}
	}
	tests := []struct {
		name string
		snap relation.Snapshot
		want []string
	}{
		{"a CA under a known root", under(int1.PEM + root.PEM),
			[]string{"1 CAs trusted", "the group's CA is an intermediate; units trust 1 anchor(s) in ca.crt"}},
		{"a CA whose root is unknown", under(int1.PEM),
			[]string{"1 CAs trusted", "units trust 1 anchor(s)", "CA chain partial: the root above the group's CA is unknown"}},
		{"units in numeric order, a rejection's reason as the error", snap,
			[]string{"relation db-peers, leader db/0", "db/2", "SAN other.example not allowed", "db/10"}},
		{"a group whose units have left", relation.Snapshot{LeaderData: snap.LeaderData},
			[]string{"leader (none)", "no units joined: units appear while their agents run"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := FromSnapshot("db-peers", tt.snap).WriteTable(&out); err != nil {
				t.Fatal(err)
			}
			text := out.String()
			last := -1
			for _, w := range tt.want {
				i := strings.Index(text, w)
				if i < 0 || i < last {
					t.Fatalf("table lacks %q (in order):\n%s", w, text)
				}
				last = i
			}
		})
	}
	if g := FromSnapshot("db-peers", snap); len(g.CAAnchors) != 0 || g.CAPartialChain {
		t.Errorf("a self-signed CA: anchors %v, partial %v; want none", g.CAAnchors, g.CAPartialChain)
	}
	g := FromSnapshot("db-peers", snap)
	if len(g.Departed) != 0 {
		t.Errorf("departed %+v, want none", g.Departed)
	}
	if len(g.CASHA256) != 64 || g.CASealed || g.Units[0].Unit != "db/2" || g.Units[0].Error == "" {
		t.Fatalf("FromSnapshot = %+v", g)
	}
}

// Departed units: one revoked (its serial in the CRL), one pending, one that said it
// will be back, and one back in time (joined again: not departed).
func TestDeparted(t *testing.T) {
	now := time.Now()
	ca := pkitest.NewCA(t, "group CA", now)
	crl, err := certutil.NewCRL(ca.Cert, ca.Key, sdk.CRLRequest{
		Revoked:    []sdk.RevokedCertificate{{Serial: big.NewInt(0xa1), RevokedAt: now}},
		ThisUpdate: now, NextUpdate: now.Add(time.Hour), Number: big.NewInt(1)})
	if err != nil {
		t.Fatal(err)
	}
	revocations, _ := json.Marshal([]protocol.Revocation{
		{Unit: "db/1", Serial: "a1", NotAfter: now.Add(time.Hour), Departed: now.Add(-time.Hour)},
		{Unit: "db/1", Serial: "a2", NotAfter: now.Add(time.Hour), Departed: now.Add(-time.Hour)},
		{Unit: "db/3", Serial: "c1", NotAfter: now.Add(time.Hour), Departed: now},
		{Unit: "db/4", Serial: "d1", NotAfter: now.Add(time.Hour), Departed: now},
	})
	snap := relation.Snapshot{Leader: "db/0",
		LeaderData: map[string]string{protocol.KeyCA: ca.PEM, protocol.KeyCRL: string(crl), protocol.KeyRevoked: string(revocations)},
		Units:      map[string]map[string]string{"db/0": {}, "db/4": {}},
		Away:       map[string]string{"db/2": protocol.NoteBack},
	}
	g := FromSnapshot("db-peers", snap)
	since := now.Add(-time.Hour).UTC().Format(time.RFC3339)
	want := []Departed{
		{Unit: "db/1", Since: since, Revoked: []string{"a1"}, Pending: []string{"a2"}},
		{Unit: "db/2", Note: protocol.NoteBack, Revoked: []string{}, Pending: []string{}},
		{Unit: "db/3", Since: now.UTC().Format(time.RFC3339), Revoked: []string{}, Pending: []string{"c1"}},
	}
	if !reflect.DeepEqual(g.Departed, want) {
		t.Fatalf("departed:\n got %+v\nwant %+v", g.Departed, want)
	}
	var out bytes.Buffer
	if err := g.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, row := range [][]string{{"DEPARTED", "NOTE", "SINCE", "REVOKED", "PENDING", "REVOCATION"}, {"db/1", "(none)", since, "a1", "a2"}, {"db/2", "back"}} {
		if !hasRow(out.String(), row) {
			t.Errorf("table lacks a row %q:\n%s", row, out.String())
		}
	}
}

func hasRow(table string, fields []string) bool {
	for _, line := range strings.Split(table, "\n") {
		if slices.Equal(strings.Fields(line), fields) {
			return true
		}
	}
	return false
}

// Units write their own bags: no field reaches the terminal raw or forges a row.
func TestTableEscapes(t *testing.T) {
	snap := relation.Snapshot{Leader: "db/0", Units: map[string]map[string]string{
		"db/0": {protocol.KeyState: "\x1b]0;owned\x07\x1b[31m" + string(protocol.StateCertificateAvailable)},
		"db/1": {protocol.KeyState: string(protocol.StateCertificateAvailable), protocol.KeyError: "disk full\ndb/9  certificate_available  deadbeef\x1b[2K\r"},
	}, Away: map[string]string{"db/\u009b7": "back\n"}}
	var out bytes.Buffer
	if err := FromSnapshot("db-peers", snap).WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.ContainsAny(text, "\x1b\x07\r\u009b") {
		t.Errorf("a control character reached the table:\n%q", text)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "db/9") {
			t.Errorf("a forged row: %q", line)
		}
	}
	for _, want := range []string{`disk full\ndb/9`, `\x1b]0;owned\x07`, `db/\u009b7`, `back\n`} {
		if !strings.Contains(text, want) {
			t.Errorf("the table lacks %s:\n%s", want, text)
		}
	}
}

// A unit whose bag holds values over their cap is named with them.
func TestOversizedBag(t *testing.T) {
	g := FromSnapshot("db-peers", relation.Snapshot{Units: map[string]map[string]string{"db/1": {protocol.KeyError: "disk full"}},
		Oversized: map[string]string{"db/1": "csr: 1048577 bytes, more than 1048576"}})
	if want := "bag values over their cap, not read (csr: 1048577 bytes, more than 1048576); disk full"; g.Units[0].Error != want {
		t.Fatalf("error %q, want %q", g.Units[0].Error, want)
	}
}

// etcd's alarms head the table.
func TestAlarmsShown(t *testing.T) {
	g := FromSnapshot("db-peers", relation.Snapshot{})
	g.Alarms = []string{"etcd member 1 raises alarm NOSPACE: ..."}
	var out bytes.Buffer
	if err := g.WriteTable(&out); err != nil || !strings.Contains(out.String(), "ALARM: etcd member 1 raises alarm NOSPACE") {
		t.Fatalf("table (%v):\n%s", err, out.String())
	}
}
