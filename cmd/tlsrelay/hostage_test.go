package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// A member that reports a serial the group never issued and trusts nothing holds no CA
// rotation hostage: `ca rotate` ends, and a unit that joins meanwhile is signed.
func TestRogueHoldsNoRotation(t *testing.T) {
	t.Parallel()
	ag, obs, endpoint := embeddedGroup(t, "hostage", 2*time.Second, "", true)
	for _, u := range []string{"web/0", "web/1"} {
		ag.start(u)
	}
	awaitObs(t, obs, "two units with certificates", time.Minute, func(s relation.Snapshot) bool { return available(s, "web/0") && available(s, "web/1") })

	rogue, err := openEtcd(t, endpoint, "hostage").Join(context.Background(), "rogue/0", relation.JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Leave(context.Background())
	if err := rogue.SetUnitData(context.Background(), map[string]string{protocol.KeySerial: "deadbeef", protocol.KeyTrusts: ""}); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--timeout", "60s") }()
	awaitObs(t, obs, "the rotation to begin", 30*time.Second, func(s relation.Snapshot) bool { return s.LeaderData[protocol.KeyCARotation] != "" })
	ag.start("web/2")
	awaitObs(t, obs, "web/2, joining during the rotation, with a certificate", 30*time.Second, func(s relation.Snapshot) bool { return available(s, "web/2") })
	r := <-done
	if r.code != 0 || !strings.Contains(r.stdout, "done: the group signs with CA") {
		t.Fatalf("ca rotate with a rogue member: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A requested rotation the leader has not begun is withdrawn by --cancel; with nothing
// requested, --cancel says so.
func TestCARotateCancel(t *testing.T) {
	t.Parallel()
	ag, obs, _ := embeddedGroup(t, "cancel", 2*time.Second, "", false) // no agent: nobody begins it
	if r := runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--wait=false"); r.code != 0 {
		t.Fatalf("ca rotate --wait=false: exit %d\n%s", r.code, r.stderr)
	}
	awaitObs(t, obs, "the request", 10*time.Second, func(s relation.Snapshot) bool { return s.Requests[protocol.RequestRotateCA] != "" })
	if r := runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--cancel"); r.code != 0 || !strings.Contains(r.stdout, "withdrew CA rotation") {
		t.Fatalf("ca rotate --cancel: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	awaitObs(t, obs, "the request gone", 10*time.Second, func(s relation.Snapshot) bool { return s.Requests[protocol.RequestRotateCA] == "" })
	if r := runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--cancel"); r.code != 0 || !strings.Contains(r.stdout, "no CA rotation is requested") {
		t.Fatalf("ca rotate --cancel with nothing requested: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
