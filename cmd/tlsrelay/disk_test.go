package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// A unit whose output disk fills up as it renews keeps its valid pair, says why, and
// tries again at a backed-off pace: a few log lines and at most a few writes of its
// error field, not hundreds a second. Freed, it renews.
func TestFullOutputDisk(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("mounting a small tmpfs as a unit's output directory needs root (CAP_SYS_ADMIN)")
	}
	ag, obs, endpoint := embeddedGroup(t, "fulldisk", 2*time.Second, "certificate: {validity: 1m, renew_jitter: 0}\n", false)
	ag.start("web/0", "TLSRELAY_CERTIFICATE_RENEW_AT=0.9")
	awaitObs(t, obs, "web/0 with a certificate", time.Minute, func(s relation.Snapshot) bool { return available(s, "web/0") })

	out := ag.unitDir("web/1")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", out).CombinedOutput(); err != nil {
		t.Fatalf("mount a 64 KiB tmpfs: %v\n%s", err, b)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", out).Run() })
	ag.start("web/1", "TLSRELAY_CERTIFICATE_RENEW_AT=0.2") // renews 12 s after issue
	awaitObs(t, obs, "web/1 with a certificate", time.Minute, func(s relation.Snapshot) bool { return available(s, "web/1") })
	pair := readPair(t, out)
	fill(t, filepath.Join(out, "filler"))

	snap := awaitObs(t, obs, "web/1 to fail for want of space", time.Minute, func(s relation.Snapshot) bool {
		return strings.Contains(s.Units["web/1"][protocol.KeyError], "no space left on device")
	})
	if shown := snap.Units["web/1"][protocol.KeyError]; strings.Contains(shown, ".tmp-") {
		t.Errorf("the error names a temporary file, so it changes with every attempt: %q", shown)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	errorKey := "/tlsrelay/fulldisk/units/web/1/" + protocol.KeyError
	versionOf := func() int64 {
		resp, err := cli.Get(context.Background(), errorKey)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get %s: %v %v", errorKey, resp, err)
		}
		return resp.Kvs[0].Version
	}
	before, lines := versionOf(), strings.Count(ag.logOf("web/1"), "step failed")
	const window = 8 * time.Second
	time.Sleep(window)
	writes, retries := versionOf()-before, strings.Count(ag.logOf("web/1"), "step failed")-lines
	t.Logf("over %s with a full disk: %d writes of the error field, %d failed steps logged", window, writes, retries)
	if writes > 2 || retries > 12 {
		t.Errorf("over %s with a full disk: %d writes of the error field (want at most 2), %d failed steps (want at most 12)", window, writes, retries)
	}
	if now := readPair(t, out); now != pair {
		t.Error("the valid pair on disk changed while the disk was full")
	}

	if err := os.Remove(filepath.Join(out, "filler")); err != nil {
		t.Fatal(err)
	}
	awaitObs(t, obs, "web/1 renewed once there is room, its error cleared", time.Minute, func(s relation.Snapshot) bool {
		return available(s, "web/1") && s.Units["web/1"][protocol.KeyError] == "" && s.Units["web/1"][protocol.KeySerial] != snap.Units["web/1"][protocol.KeySerial]
	})
}

// readPair is the certificate and key in dir, as one text.
func readPair(t *testing.T, dir string) string {
	t.Helper()
	return string(mustRead(t, filepath.Join(dir, "tls.crt"))) + string(mustRead(t, filepath.Join(dir, "tls.key")))
}

// fill writes name until its file system has no room left.
func fill(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// What is left is smaller than a block: take it byte by byte.
	for {
		if _, err := f.Write(block[:1]); err != nil {
			return
		}
	}
}
