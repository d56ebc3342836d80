package relation_test

import (
	"context"
	"testing"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/relationtest"
)

func TestMemory(t *testing.T) {
	relationtest.Run(t, func(*testing.T) relation.Store { return relation.NewMemory(protocol.Schema()) })
}

func TestMemorySnapshotIsACopy(t *testing.T) {
	ctx := context.Background()
	a := relationtest.Join(t, relation.NewMemory(protocol.Schema()), "db/0", true)
	before, _ := a.Snapshot(ctx)
	if err := a.SetUnitData(ctx, map[string]string{"csr": "c"}); err != nil {
		t.Fatal(err)
	}
	if len(before.Units["db/0"]) != 0 {
		t.Fatal("a held snapshot changed under its holder")
	}
	before.Units["db/0"]["x"] = "y" // must not reach the store
	if after, _ := a.Snapshot(ctx); after.Units["db/0"]["x"] != "" {
		t.Fatal("writing to a snapshot changed the store")
	}
}
