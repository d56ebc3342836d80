package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// Description is one configured plugin as `tlsrelay plugins` shows it.
type Description struct {
	Name    string
	Builtin bool
	Command string // the binary: the configured command, or the tlsrelay binary for a built-in
	SHA256  string // of the binary
	Roles   []config.Role
	Info    sdk.Info
	Err     error // why it could not be started or asked, if it could not
}

// Describe starts each configured plugin (as For would) and asks what it is. A plugin
// that cannot start is described with the reason, not skipped.
func (h *Host) Describe(ctx context.Context) []Description {
	var out []Description
	for _, name := range h.pluginNames() {
		spec := h.opts.Plugins[name]
		d := Description{Name: name, Builtin: spec.Builtin, Command: spec.Command}
		if spec.Builtin {
			d.Command = h.opts.Self
		}
		d.SHA256, d.Err = FileSHA256(d.Command)
		for _, role := range []config.Role{config.RoleCSR, config.RoleSigner, config.RoleSecrets} {
			if h.opts.Roles.Backend(role) == name {
				d.Roles = append(d.Roles, role)
			}
		}
		if d.Err == nil {
			d.Info, d.Err = h.Info(ctx, name)
		}
		out = append(out, d)
	}
	return out // in name order: pluginNames is sorted
}

// FileSHA256 is the hex SHA-256 of a file, as plugins.NAME.sha256 wants it.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
