package backend

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/sdk/pluginhost"
)

// command builds the child's command line: the tlsrelay binary itself for a built-in
// backend, or the configured command pinned by its checksum. An external binary is
// opened, hashed through the open file and executed from that same file
// (/proc/self/fd), so a file swapped in after the check never runs; the file is
// returned to be kept open while the process runs.
func (h *Host) command(name string, spec config.Plugin) (*exec.Cmd, *os.File, error) {
	if h.sockets == "" {
		dir, err := socketDir()
		if err != nil {
			return nil, nil, fmt.Errorf("plugin %s: a directory for its socket: %w", name, err)
		}
		h.sockets = dir
	}
	logLevel := "TLSRELAY_LOG_LEVEL=" + h.log.GetLevel().String()
	if spec.Builtin {
		cmd := exec.Command(h.opts.Self, "plugin", "serve", name)
		cmd.Env = append(os.Environ(), logLevel)
		return cmd, nil, nil
	}
	binary, err := openVerified(name, spec)
	if err != nil {
		return nil, nil, err
	}
	cmd := externalCommand(spec, binary)
	cmd.Env = append(cmd.Env, logLevel)
	return cmd, binary, nil
}

// externalCommand runs the open, verified binary (through /proc, which names this
// process's open file), with the command's name as argv[0] and a minimal environment.
func externalCommand(spec config.Plugin, binary *os.File) *exec.Cmd {
	cmd := exec.Command(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), binary.Fd()))
	cmd.Args[0] = spec.Command
	cmd.Env = pluginhost.Environ(spec.Env)
	return cmd
}

// openVerified opens the plugin's binary and checks its SHA-256 through the open file.
// A mismatch names both sums.
func openVerified(name string, spec config.Plugin) (*os.File, error) {
	want, err := hex.DecodeString(spec.SHA256)
	if err != nil || len(want) != sha256.Size {
		return nil, fault.Permanent(fmt.Errorf("plugins.%s.sha256: %q is not 64 hex digits", name, spec.SHA256))
	}
	f, err := os.Open(spec.Command)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("plugins.%s.command: %w", name, err))
	}
	hash := sha256.New()
	if _, err := io.Copy(hash, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("plugins.%s.command: %w", name, err)
	}
	if got := hash.Sum(nil); !bytes.Equal(got, want) {
		f.Close()
		return nil, fault.Permanent(fmt.Errorf("plugins.%s: refusing to run %s: its sha256 is %x but the config pins %x (the binary was replaced or tampered with)",
			name, spec.Command, got, want))
	}
	return f, nil
}
