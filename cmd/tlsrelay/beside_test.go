package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `tlsrelay status` with the config of an agent on the embedded store (the default)
// answers while the agent runs: it reaches the agent's etcd instead of waiting on its
// data directory.
func TestStatusBesideARunningAgent(t *testing.T) {
	t.Parallel()
	ag := newAgentsWith(t, "relation: {name: alone, store: embedded}\n", false)
	ag.start("web/0")
	env := []string{"TLSRELAY_STATE_DIR=" + filepath.Join(ag.dir, "state-web-0")}
	deadline := time.Now().Add(time.Minute)
	for {
		r := runBinaryWith(t, ag.bin, env, "status", "--config", ag.config, "--timeout", "10s")
		if r.code == 0 && strings.Contains(r.stdout, "web/0") && strings.Contains(r.stdout, "signed certificate available") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status beside a running agent: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
