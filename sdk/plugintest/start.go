package plugintest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hashicorp/go-plugin"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/pluginhost"
)

// Starter starts a backend that keeps its state in stateDir and returns the host's view
// of it (over the go-plugin wire) and a function that stops it. Starting again with the
// same stateDir is a restart of the plugin.
type Starter func(stateDir string) (backend sdk.Backend, stop func(), err error)

// launched is what the kit's own Starters know of a backend they started: its config,
// and for a process, whether it died and how.
type launched struct {
	known  bool // started by a Starter of the kit's
	config []byte
	// died says how the plugin process died, "" while it runs; failing: a call has
	// just failed, so a death may still be on its way to being noticed.
	died  func(failing bool) string
	limit *callLimit // bounds each call to it
}

// started maps each backend the kit's Starters started to what they know of it (a
// Starter of the caller's own is known by nothing).
var started sync.Map

func launchedAs(b sdk.Backend) launched {
	l, _ := started.Load(b)
	out, _ := l.(launched)
	return out
}

// InProcess serves the backends newBackend makes in this process, through the same
// go-plugin Serve path a plugin binary uses (gRPC, AutoMTLS off), and configures each
// with configJSON. Stopping it closes the backend (sdk.Closer) before it returns, as a
// plugin process does when the host stops it.
func InProcess(newBackend func() sdk.Backend, configJSON []byte) Starter {
	return func(stateDir string) (sdk.Backend, func(), error) {
		ctx, cancel := context.WithCancel(context.Background())
		reattach := make(chan *plugin.ReattachConfig, 1)
		closed, served := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(served)
			sdk.Serve(newBackend(), sdk.WithServeTest(&plugin.ServeTestConfig{
				Context: ctx, ReattachConfigCh: reattach, CloseCh: closed,
			}), func(sc *plugin.ServeConfig) { sc.Logger = quiet })
		}()
		var rc *plugin.ReattachConfig
		select {
		case rc = <-reattach:
		case <-closed:
			cancel()
			return nil, nil, fmt.Errorf("in-process plugin stopped before it served")
		}
		limit := &callLimit{}
		client := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig: sdk.Handshake,
			Logger:          quiet,
			// A reattached client skips version negotiation and uses Plugins.
			Plugins:          sdk.VersionedPlugins(nil)[sdk.ProtocolVersion],
			Reattach:         rc,
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			GRPCDialOptions:  limit.dialOptions(),
		})
		var b sdk.Backend
		stop := func() {
			client.Kill()
			cancel()
			<-closed
			<-served // the backend closed
			started.Delete(b)
		}
		b, err := dispense(client, configJSON, stateDir)
		if err != nil {
			stop()
			return nil, nil, err
		}
		started.Store(b, launched{known: true, config: configJSON, limit: limit})
		return b, stop, nil
	}
}

// Command launches a plugin binary as a child process through go-plugin, as the
// tlsrelay host does (gRPC, mutual TLS with a leaf handed over a pipe, and the host's
// environment: pluginhost.BaseEnv and nothing more), and configures it with configJSON.
func Command(configJSON []byte, path string, args ...string) Starter {
	return CommandEnv(nil, configJSON, path, args...)
}

// CommandEnv is Command for a plugin whose config declares environment variables it
// needs (a plugin's env: in tlsrelay's config, such as SOFTHSM2_CONF): they reach it
// as the host passes them, and nothing else of the test's environment does.
func CommandEnv(env []string, configJSON []byte, path string, args ...string) Starter {
	return func(stateDir string) (sdk.Backend, func(), error) {
		host, err := hostIdentity()
		if err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(path, args...)
		cmd.Env = pluginhost.Environ(env)
		tlsConfig, err := host.Hand(cmd)
		if err != nil {
			return nil, nil, err
		}
		tail := &pluginhost.Tail{Max: 20}
		limit := &callLimit{}
		client := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  sdk.Handshake,
			VersionedPlugins: sdk.VersionedPlugins(nil),
			Cmd:              cmd,
			Logger:           quiet,
			Stderr:           tail,
			SkipHostEnv:      true, // cmd.Env is the host's rule
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			TLSConfig:        tlsConfig,
			GRPCDialOptions:  limit.dialOptions(),
		})
		b, err := dispense(client, configJSON, stateDir)
		for _, f := range cmd.ExtraFiles {
			f.Close() // the child has its copy, or never started
		}
		if err != nil {
			client.Kill()
			if tail.String() != "" {
				err = fmt.Errorf("%w; its last stderr lines:\n%s", err, tail.String())
			}
			return nil, nil, fmt.Errorf("%w\n%s", err, envHint(env))
		}
		started.Store(b, launched{known: true, config: configJSON, limit: limit,
			died: func(failing bool) string { return died(client, cmd, tail, failing) }})
		return b, func() { client.Kill(); started.Delete(b) }, nil
	}
}

// envHint says what environment a plugin the kit launched had: a plugin that fails at
// start for want of a variable (SOFTHSM2_CONF, a token) reads why here.
func envHint(declared []string) string {
	have := append(slices.Clone(pluginhost.BaseEnv), declared...)
	return fmt.Sprintf("(the plugin ran with the host's environment: %s and nothing else of the test's; "+
		"a variable it needs is declared with plugintest.CommandEnv, and under env: in tlsrelay's config)", strings.Join(have, ", "))
}

// died says how the plugin process died, or "" if it runs. After a failed call it waits
// a moment for the exit to be noticed.
func died(client *plugin.Client, cmd *exec.Cmd, tail *pluginhost.Tail, failing bool) string {
	for wait := 0; !client.Exited() && failing && wait < 20; wait++ {
		time.Sleep(25 * time.Millisecond)
	}
	if !client.Exited() {
		return ""
	}
	status := "it exited"
	if cmd.ProcessState != nil {
		status = cmd.ProcessState.String()
	}
	if p := tail.Panic(); p != "" {
		status += ", " + p
	}
	return fmt.Sprintf("%s; its last stderr lines:\n%s", status, tail.String())
}

var hostIdentity = sync.OnceValues(pluginhost.NewIdentity)

// quiet keeps go-plugin's own chatter out of test output; failures surface as errors.
var quiet = hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: os.Stderr})

func dispense(client *plugin.Client, configJSON []byte, stateDir string) (sdk.Backend, error) {
	rpc, err := client.Client()
	if err != nil {
		return nil, fmt.Errorf("connect to plugin: %w", err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		return nil, fmt.Errorf("dispense backend: %w", err)
	}
	b := raw.(sdk.Backend)
	if err := b.Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: configJSON, StateDir: stateDir}); err != nil {
		return nil, fmt.Errorf("Configure: %w", err)
	}
	return b, nil
}
