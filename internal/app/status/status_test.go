package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/pkitest"
)

func TestFromSnapshotAndTable(t *testing.T) {
	ca := pkitest.NewCA(t, "group CA", time.Now())
	snap := relation.Snapshot{Leader: "db/0",
		LeaderData: map[string]string{protocol.KeyCA: ca.PEM},
		Units: map[string]map[string]string{
			"db/10": {protocol.KeyState: string(protocol.StateCertificateAvailable), protocol.KeySerial: "0a"},
			"db/2":  {protocol.KeyState: string(protocol.StateRejected), protocol.KeyDetail: "SAN other.example not allowed"},
		}}
	tests := []struct {
		name string
		snap relation.Snapshot
		want []string
	}{
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
	g := FromSnapshot("db-peers", snap)
	if len(g.CASHA256) != 64 || g.CASealed || g.Units[0].Unit != "db/2" || g.Units[0].Error == "" {
		t.Fatalf("FromSnapshot = %+v", g)
	}
}
