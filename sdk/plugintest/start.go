package plugintest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/hashicorp/go-plugin"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/pluginhost"
)

// Starter starts a backend that keeps its state in stateDir and returns the host's view
// of it (over the go-plugin wire) and a function that stops it. Starting again with the
// same stateDir is a restart of the plugin.
type Starter func(stateDir string) (backend sdk.Backend, stop func(), err error)

// InProcess serves the backends newBackend makes in this process, through the same
// go-plugin Serve path a plugin binary uses (gRPC, AutoMTLS off), and configures each
// with configJSON.
func InProcess(newBackend func() sdk.Backend, configJSON []byte) Starter {
	return func(stateDir string) (sdk.Backend, func(), error) {
		ctx, cancel := context.WithCancel(context.Background())
		reattach := make(chan *plugin.ReattachConfig, 1)
		closed := make(chan struct{})
		go sdk.Serve(newBackend(), sdk.WithServeTest(&plugin.ServeTestConfig{
			Context: ctx, ReattachConfigCh: reattach, CloseCh: closed,
		}), func(sc *plugin.ServeConfig) { sc.Logger = quiet })
		var rc *plugin.ReattachConfig
		select {
		case rc = <-reattach:
		case <-closed:
			cancel()
			return nil, nil, fmt.Errorf("in-process plugin stopped before it served")
		}
		client := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig: sdk.Handshake,
			Logger:          quiet,
			// A reattached client skips version negotiation and uses Plugins.
			Plugins:          sdk.VersionedPlugins(nil)[sdk.ProtocolVersion],
			Reattach:         rc,
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		})
		stop := func() {
			client.Kill()
			cancel()
			<-closed
		}
		b, err := dispense(client, configJSON, stateDir)
		if err != nil {
			stop()
			return nil, nil, err
		}
		return b, stop, nil
	}
}

// Command launches a plugin binary as a child process through go-plugin, as the
// tlsrelay host does (gRPC, mutual TLS with a leaf handed over a pipe), and configures
// it with configJSON.
func Command(configJSON []byte, path string, args ...string) Starter {
	return func(stateDir string) (sdk.Backend, func(), error) {
		host, err := hostIdentity()
		if err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(path, args...)
		tlsConfig, err := host.Hand(cmd)
		if err != nil {
			return nil, nil, err
		}
		client := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  sdk.Handshake,
			VersionedPlugins: sdk.VersionedPlugins(nil),
			Cmd:              cmd,
			Logger:           quiet,
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			TLSConfig:        tlsConfig,
		})
		b, err := dispense(client, configJSON, stateDir)
		for _, f := range cmd.ExtraFiles {
			f.Close() // the child has its copy, or never started
		}
		if err != nil {
			client.Kill()
			return nil, nil, err
		}
		return b, client.Kill, nil
	}
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
