package openssl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// tool runs the openssl binary. Arguments are passed as a list, never through a shell,
// and untrusted values reach openssl only after validation.
type tool struct {
	path    string
	version [3]int
}

// minVersion is the oldest OpenSSL with what this backend uses (req -addext).
var minVersion = [3]int{1, 1, 1}

var versionLine = regexp.MustCompile(`^OpenSSL (\d+)\.(\d+)\.(\d+)`)

// findTool resolves the configured binary and checks its version.
func findTool(ctx context.Context, name string) (tool, string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return tool{}, "", sdk.Errorf(sdk.CodeFailedPrecondition, "config.openssl",
			"openssl binary %q not found (install openssl, or set config.openssl to its path): %v", name, err)
	}
	t := tool{path: path}
	out, err := t.run(ctx, nil, "version")
	if err != nil {
		return tool{}, "", err
	}
	line := strings.TrimSpace(string(out))
	m := versionLine.FindStringSubmatch(line)
	if m == nil {
		return tool{}, "", sdk.Errorf(sdk.CodeFailedPrecondition, path, "%q is not OpenSSL (it says %q)", path, line)
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	t.version = v
	if compare(v, minVersion) < 0 {
		return tool{}, "", sdk.Errorf(sdk.CodeFailedPrecondition, path, "%s is too old: need OpenSSL %d.%d.%d or newer", line, minVersion[0], minVersion[1], minVersion[2])
	}
	return t, line, nil
}

func compare(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return 0
}

// run runs openssl with args, feeding stdin; it returns stdout. A failure is Internal
// with openssl's own complaint (stderr, which never carries key material).
func (t tool) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	return t.runWithFile(ctx, stdin, nil, args...)
}

// fd3 is the path by which openssl reads the extra file runWithFile passes.
const fd3 = "/dev/fd/3"

// runWithFile is run with file's content readable by openssl at fd3 (a pipe), for the
// configuration files openssl only takes by path.
func (t tool) runWithFile(ctx context.Context, stdin, file []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, t.path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	if file != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeInternal, "openssl "+args[0], "pipe: %v", err)
		}
		defer r.Close()
		go func() {
			w.Write(file)
			w.Close()
		}()
		cmd.ExtraFiles = []*os.File{r}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, sdk.Errorf(sdk.CodeUnavailable, "openssl "+args[0], "%v", ctx.Err())
		}
		return nil, sdk.Errorf(sdk.CodeInternal, "openssl "+args[0], "%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// subject builds a -subj argument for a common name: openssl splits on '/' and '+'
// and unescapes '\', so those are escaped (unit names contain '/').
func subject(cn string) string {
	var b strings.Builder
	b.WriteString("/CN=")
	for _, r := range cn {
		if strings.ContainsRune(`/+\=`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// keyArgs are genpkey's arguments for a key spec (already checked).
func keyArgs(k sdk.KeySpec) []string {
	if k.Algorithm == "rsa" {
		return []string{"-algorithm", "RSA", "-pkeyopt", fmt.Sprintf("rsa_keygen_bits:%d", k.Size)}
	}
	return []string{"-algorithm", "EC", "-pkeyopt", fmt.Sprintf("ec_paramgen_curve:P-%d", k.Size)}
}
