// Package backend is the host side of backend plugins: it launches each configured
// backend as a child process through go-plugin (a built-in one by re-executing the
// tlsrelay binary as `tlsrelay plugin serve NAME`, an external one from its command after
// checking its SHA-256), configures it, checks it can serve the roles it is given,
// relaunches it if it dies, and kills every child on Close.
package backend

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/pluginhost"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// Options configure a Host.
type Options struct {
	// Self is the tlsrelay binary that serves built-in backends. Default: os.Executable.
	Self string
	// Plugins and Roles come from the deployment's config.
	Plugins map[string]config.Plugin
	Roles   config.Roles
	// StateDir is the parent of each backend's state directory (StateDir/NAME).
	StateDir string
	Logger   hclog.Logger
	// OnRestart, if set, is called when a plugin starts again after its process died
	// or was killed (for the plugin restarts metric).
	OnRestart func(plugin string)
	// Validity is the certificate lifetime the group asks for, told to every backend
	// in Configure (sdk.ConfigureRequest.Validity).
	Validity time.Duration
	// IdleStop stops a plugin no call has used for this long (plugin_idle); 0 never.
	// OnIdleStop, if set, is called for each plugin stopped so.
	IdleStop   time.Duration
	OnIdleStop func(plugin string)
}

// Host runs the backends of one unit.
type Host struct {
	opts Options
	log  hclog.Logger

	mu          sync.Mutex
	closed      bool
	running     map[string]*running
	started     map[string]bool // plugins started at least once: a later start is a restart
	warm        map[string]int  // plugins kept running whatever IdleStop says, by how many asked
	stopReaping chan struct{}   // ends reapIdle
	// sockets holds the plugins' unix sockets, made on the first start and removed by
	// Close, with the sockets of any plugin that was killed and could not remove its own.
	sockets string
}

type running struct {
	process *processRunner
	client  *plugin.Client
	backend sdk.Backend
	info    sdk.Info
	lastUse atomic.Int64 // unix nanoseconds of the last call (IdleStop)
}

// New returns a Host; it launches nothing until a backend is first needed.
func New(opts Options) (*Host, error) {
	if opts.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the tlsrelay binary for built-in backends: %w", err)
		}
		opts.Self = self
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	h := &Host{opts: opts, log: opts.Logger, running: map[string]*running{}, started: map[string]bool{}, warm: map[string]int{}}
	if opts.IdleStop > 0 {
		h.stopReaping = make(chan struct{})
		go h.reapIdle(h.stopReaping)
	}
	return h, nil
}

// roleNeeds lists the capabilities each role uses.
var roleNeeds = map[config.Role][]sdk.Capability{
	config.RoleCSR:     {sdk.CapCreateCSR},
	config.RoleSigner:  {sdk.CapSignCSR, sdk.CapCA},
	config.RoleSecrets: {sdk.CapFetchSecret},
}

// For returns the backend configured for role, launching it on first use and again if
// its process has died.
func (h *Host) For(ctx context.Context, role config.Role) (sdk.Backend, error) {
	name := h.opts.Roles.Backend(role)
	if name == "" {
		return nil, fmt.Errorf("roles.%s: no backend configured", role)
	}
	r, err := h.launch(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, c := range roleNeeds[role] {
		if !r.info.Has(c) {
			return nil, fault.Permanent(sdk.Errorf(sdk.CodeUnimplemented, "roles."+string(role), "backend %q (%s %s) cannot serve this role: it lacks %s",
				name, r.info.Name, r.info.Version, c))
		}
	}
	r.used()
	return guarded{Backend: r.backend, host: h, name: name, r: r}, nil
}

// kill stops the plugin r, if it is still the one running as name, so that the next
// For starts another. It does not wait for the process.
func (h *Host) kill(name string, r *running, why string) {
	h.mu.Lock()
	if h.running[name] == r {
		delete(h.running, name)
	}
	h.mu.Unlock()
	h.log.Warn("killing plugin", "plugin", name, "pid", r.process.ID(), "why", why)
	go r.client.Kill()
}

// Info returns the Info of the named backend, launching it if needed.
func (h *Host) Info(ctx context.Context, name string) (sdk.Info, error) {
	r, err := h.launch(ctx, name)
	if err != nil {
		return sdk.Info{}, err
	}
	return r.info, nil
}

// launch returns the running plugin called name, starting it when it is not running.
func (h *Host) launch(ctx context.Context, name string) (*running, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("plugin %s: host is shut down", name)
	}
	if r, ok := h.running[name]; ok {
		if !r.client.Exited() {
			return r, nil
		}
		h.log.Warn("plugin exited; relaunching", "plugin", name)
		delete(h.running, name)
	}
	spec, ok := h.opts.Plugins[name]
	if !ok {
		return nil, fmt.Errorf("plugin %q is not configured (configured: %v)", name, h.pluginNames())
	}
	if h.started[name] && h.opts.OnRestart != nil {
		h.opts.OnRestart(name)
	}
	h.started[name] = true
	r, err := h.start(ctx, name, spec)
	if err != nil {
		return nil, err
	}
	r.used()
	h.running[name] = r
	return r, nil
}

// hostIdentity is this process's TLS identity towards its plugins, made once: one
// P-256 key per host process instead of go-plugin AutoMTLS's P-521 pair per launch.
var hostIdentity = sync.OnceValues(pluginhost.NewIdentity)

// handTransportIdentity gives the plugin cmd will run its own TLS leaf, signed by the
// host's identity (pluginhost.Identity.Hand); processRunner.Start closes the parent's end
// of the pipe once the process has started.
func handTransportIdentity(cmd *exec.Cmd) (*tls.Config, error) {
	id, err := hostIdentity()
	if err != nil {
		return nil, fmt.Errorf("the host's TLS identity: %w", err)
	}
	return id.Hand(cmd)
}

// startTimeout bounds a plugin's start when the caller's context has no deadline.
const startTimeout = time.Minute

func (h *Host) start(ctx context.Context, name string, spec config.Plugin) (*running, error) {
	cmd, binary, err := h.command(name, spec)
	if err != nil {
		return nil, err
	}
	transport, err := handTransportIdentity(cmd)
	if err != nil {
		if binary != nil {
			binary.Close()
		}
		return nil, fmt.Errorf("plugin %s: %w", name, err)
	}
	process := newProcessRunner(cmd, binary, h.log.Named(name))
	timeout := startTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(deadline), time.Millisecond)
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.VersionedPlugins(nil),
		// go-plugin fills spec's environment with its handshake; the process is ours.
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			cmd.Env = append(cmd.Env, spec.Env...)
			return process, nil
		},
		SkipHostEnv:      true, // command() chose the environment
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: h.sockets},
		StartTimeout:     timeout,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		TLSConfig:        transport,
		Logger:           h.log.Named(name),
		// What a plugin writes to os.Stdout or os.Stderr after Serve (go-plugin forwards
		// both) lands in the host's log, not nowhere: stderr at info, stdout at warn.
		SyncStdout: h.log.Named(name).StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
		SyncStderr: h.log.Named(name).StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Info}),
	})
	r, err := h.connect(ctx, name, client)
	if err != nil {
		client.Kill()
		return nil, err
	}
	r.process = process
	h.log.Debug("plugin ready", "plugin", name, "backend", r.info.Name, "version", r.info.Version,
		"pid", process.ID(), "capabilities", r.info.Capabilities)
	return r, nil
}

// handshake starts the plugin process and connects to it, bounded by ctx: go-plugin's
// own wait knows only its start timeout.
func handshake(ctx context.Context, name string, client *plugin.Client) (plugin.ClientProtocol, error) {
	type result struct {
		rpc plugin.ClientProtocol
		err error
	}
	done := make(chan result, 1)
	go func() {
		rpc, err := client.Client()
		done <- result{rpc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("plugin %s: start: %w", name, r.err)
		}
		return r.rpc, nil
	case <-ctx.Done():
		client.Kill()
		return nil, fmt.Errorf("plugin %s: start: %w", name, ctx.Err())
	}
}

func (h *Host) connect(ctx context.Context, name string, client *plugin.Client) (*running, error) {
	rpc, err := handshake(ctx, name, client)
	if err != nil {
		return nil, err
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", name, err)
	}
	b, ok := raw.(sdk.Backend)
	if !ok {
		return nil, fmt.Errorf("plugin %s: served %T, not a tlsrelay backend", name, raw)
	}
	// Configure first: what a backend claims may follow its config (a token shared
	// between hosts claims ca_shared).
	if err := h.configure(ctx, name, b); err != nil {
		return nil, err
	}
	info, err := b.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: Info: %w", name, err)
	}
	return &running{client: client, backend: b, info: info}, nil
}

func (h *Host) configure(ctx context.Context, name string, b sdk.Backend) error {
	cfg := h.opts.Plugins[name].Config
	if cfg == nil {
		cfg = map[string]any{} // "{}", not "null": a plugin may decode it as an object
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("plugins.%s.config: %w", name, err)
	}
	stateDir := filepath.Join(h.opts.StateDir, name)
	for _, dir := range []string{h.opts.StateDir, stateDir} {
		if err := safedir.Ensure(dir, 0o700); err != nil {
			return fault.Permanent(fmt.Errorf("plugin %s: state directory: %w", name, err))
		}
	}
	if err := b.Configure(ctx, sdk.ConfigureRequest{ConfigJSON: raw, StateDir: stateDir, Validity: h.opts.Validity}); err != nil {
		err = fmt.Errorf("plugins.%s.config: %w", name, err)
		if sdk.IsCode(err, sdk.CodeInvalidArgument) || sdk.IsCode(err, sdk.CodeFailedPrecondition) {
			return fault.Permanent(err) // the backend refuses its config: only an edit mends it
		}
		return err
	}
	return nil
}

// Pids lists the process ids of the running plugins, by backend name.
func (h *Host) Pids() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	pids := map[string]int{}
	for name, r := range h.running {
		if r.process.cmd.Process != nil {
			pids[name] = r.process.cmd.Process.Pid
		}
	}
	return pids
}

// Close kills every plugin process and waits for each to exit.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.stopReaping != nil {
		close(h.stopReaping)
		h.stopReaping = nil
	}
	for name, r := range h.running {
		r.client.Kill() // graceful first, then forced after a grace period; waits
		delete(h.running, name)
	}
	if h.sockets != "" {
		os.RemoveAll(h.sockets)
	}
}

func (h *Host) pluginNames() []string {
	names := make([]string, 0, len(h.opts.Plugins))
	for name := range h.opts.Plugins {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
