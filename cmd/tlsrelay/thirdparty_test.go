package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
)

// A third party's plugin: a module of its own in a temporary directory that requires
// only the sdk module (from this checkout, through a replace, as sdk/README.md says). It
// builds; its module graph holds none of tlsrelay's heavy dependencies; it passes the
// conformance kit in process and as a binary; and `tlsrelay up` runs a group on it,
// named by its command and sha256.
func TestThirdPartyPluginModule(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	mod := t.TempDir()
	// The minimal example, as an outsider would copy it: its own module path.
	copyInto := func(src, dst string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "github.com/tlsrelay/tlsrelay/sdk/examples/minimal", "example.com/myplugin")
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mod, dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mod, dst), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyInto("sdk/examples/minimal/minimal.go", "minimal.go")
	copyInto("sdk/examples/minimal/backend_test.go", "backend_test.go")
	copyInto("sdk/examples/minimal/cmd/tlsrelay-plugin-minimal/main.go", "cmd/tlsrelay-plugin-minimal/main.go")
	goIn := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	goIn("mod", "init", "example.com/myplugin")
	goIn("mod", "edit", "-require=github.com/tlsrelay/tlsrelay/sdk@v0.0.0", "-replace=github.com/tlsrelay/tlsrelay/sdk="+filepath.Join(root, "sdk"))
	goIn("mod", "tidy")
	graph := goIn("list", "-m", "all")
	if heavy := regexp.MustCompile(`(?m)^(github.com/cloudflare/cfssl|github.com/gophercloud|github.com/spf13/(viper|cobra)|go.etcd.io/|github.com/tlsrelay/tlsrelay )`).FindAllString(graph, -1); len(heavy) > 0 {
		t.Fatalf("the plugin's module graph pulls %v:\n%s", heavy, graph)
	}
	t.Logf("the plugin's module graph: %d modules", strings.Count(graph, "\n"))
	// The kit, in process and against the built binary (backend_test.go does both).
	goIn("test", "-count=1", "./...")
	bin := filepath.Join(mod, "myplugin")
	goIn("build", "-o", bin, "./cmd/tlsrelay-plugin-minimal")

	// A group on it, pinned by its checksum.
	config := fileWriter(t, mod)("tlsrelay.yaml", fmt.Sprintf(`roles: {csr: mine, signer: mine}
plugins:
  mine: {command: %s, sha256: %s}
`, bin, testbin.SHA256(t, bin)))
	r := run(t, "up", "--config", config, "--dir", t.TempDir(), "--units", "3")
	if r.code != 0 || !strings.Contains(r.stdout, "OK: 3 units up") {
		t.Fatalf("up on the third party's plugin: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, `chain to CA "minimal CA"`) {
		t.Errorf("the group's certificates are not the plugin's (its CA is \"minimal CA\"):\n%s", r.stdout)
	}
}
