package easyrsa

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// tool runs the easyrsa script in batch mode against one PKI directory. Every run gets
// a clean environment: the caller's EASYRSA_* variables are dropped (an exported
// EASYRSA_REQ_CN would otherwise become the common name of every later request), and
// only the variables one command needs are set, for that command alone.
type tool struct{ path string }

var versionLine = regexp.MustCompile(`(?m)^Version:\s+(\d+)\.(\d+)\.(\d+)`)

// findTool resolves easyrsa and checks that it is 3.1 or newer (serverClient
// certificates, --subject-alt-name on gen-req).
func findTool(ctx context.Context, name string) (tool, string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return tool{}, "", sdk.Errorf(sdk.CodeFailedPrecondition, "config.easyrsa",
			"easyrsa %q not found (install easy-rsa, or set config.easyrsa to its path): %v", name, err)
	}
	t := tool{path: path}
	out, err := t.run(ctx, "", nil, "--version")
	if err != nil {
		return tool{}, "", err
	}
	m := versionLine.FindStringSubmatch(string(out))
	if m == nil {
		return tool{}, "", sdk.Errorf(sdk.CodeFailedPrecondition, path, "%s does not report an easy-rsa version", path)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	version := m[1] + "." + m[2] + "." + m[3]
	if major != 3 || minor < 1 {
		return tool{}, "", sdk.Errorf(sdk.CodeFailedPrecondition, path, "easy-rsa %s is not supported: need 3.1 or a later 3.x", version)
	}
	return t, version, nil
}

// run runs `easyrsa args...` with EASYRSA_PKI=pki (unless empty) and the given extra
// variables. It returns stdout; a failure is Internal with easy-rsa's complaint.
func (t tool) run(ctx context.Context, pki string, vars map[string]string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, t.path, args...)
	cmd.Env = cleanEnv()
	cmd.Env = append(cmd.Env, "EASYRSA_BATCH=1")
	if pki != "" {
		cmd.Env = append(cmd.Env, "EASYRSA_PKI="+pki)
	}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, sdk.Errorf(sdk.CodeUnavailable, "easyrsa "+args[len(args)-1], "%v", ctx.Err())
		}
		return nil, sdk.Errorf(sdk.CodeInternal, "easyrsa "+strings.Join(args, " "), "%v: %s", err, lastLines(stderr.String()+stdout.String(), 6))
	}
	return stdout.Bytes(), nil
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EASYRSA") {
			env = append(env, kv)
		}
	}
	return env
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// keyVars are the easy-rsa variables for a key spec (already checked).
func keyVars(k sdk.KeySpec) map[string]string {
	if k.Algorithm == "rsa" {
		return map[string]string{"EASYRSA_ALGO": "rsa", "EASYRSA_KEY_SIZE": strconv.Itoa(k.Size)}
	}
	curve := map[int]string{256: "prime256v1", 384: "secp384r1"}[k.Size]
	return map[string]string{"EASYRSA_ALGO": "ec", "EASYRSA_CURVE": curve}
}
