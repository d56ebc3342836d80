package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/tlsrelay/tlsrelay/sdk/internal/backendv1"
)

// ProtocolVersion is the newest backend protocol version this SDK speaks.
const ProtocolVersion = 1

// PluginName is the key of the backend in go-plugin's plugin map.
const PluginName = "backend"

// Handshake is shared by host and plugin. It is not a security measure: it stops a user
// from running a plugin binary by hand and tells a wrong binary apart from a broken one.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "TLSRELAY_PLUGIN",
	MagicCookieValue: "9d3c4b1e-backend",
}

// GRPCPlugin is the go-plugin glue for a Backend. Impl is set on the plugin side only.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Backend
}

// GRPCServer registers the backend's gRPC service in the plugin process.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterBackendServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns the host's Backend for a connected plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{client: pb.NewBackendClient(c)}, nil
}

// VersionedPlugins is the plugin map for every protocol version, for host and plugin
// alike. Version 2 will be added beside version 1, never instead of it.
func VersionedPlugins(impl Backend) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		1: {PluginName: &GRPCPlugin{Impl: impl}},
	}
}

// ServeOption adjusts Serve; tests use WithServeTest to serve in-process.
type ServeOption func(*plugin.ServeConfig)

// WithServeTest serves the plugin in-process for tests (go-plugin's ServeTestConfig).
func WithServeTest(cfg *plugin.ServeTestConfig) ServeOption {
	return func(sc *plugin.ServeConfig) { sc.Test = cfg }
}

// Serve runs a backend plugin. Call it from the plugin's main; it returns when the
// host disconnects, after closing b if it is a Closer. Logs go to stderr through hclog
// (stdout carries the handshake).
func Serve(b Backend, opts ...ServeOption) {
	cfg := &plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: VersionedPlugins(b),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           Logger("plugin"),
		TLSProvider:      transportProvider(), // nil: AutoMTLS, for a host that hands no identity
	}
	for _, opt := range opts {
		opt(cfg)
	}
	plugin.Serve(cfg)
	if c, ok := b.(Closer); ok {
		if err := c.Close(); err != nil {
			Logger("plugin").Error("closing the backend", "error", err)
		}
	}
}

// Closer is an optional part of a backend: Serve calls Close once the host has
// stopped the plugin (and the conformance kit, once it stops an in-process backend),
// so that a backend can release what outlives a call: a PKCS#11 session, a connection.
type Closer interface {
	Close() error
}

// stderr is the process's stderr as the plugin started. go-plugin's Serve replaces
// os.Stderr with a pipe of its own (forwarded to the host, which drops it), so a logger
// made after Serve on os.Stderr would write nowhere; loggers write here instead, where
// the host reads and re-emits them.
var stderr = os.Stderr

// Logger returns the logger a plugin should use: JSON on the plugin's stderr, which the
// host parses and re-emits through its own logger with levels intact, wherever in the
// plugin the logger is made (before Serve or inside a call). TLSRELAY_LOG_LEVEL sets the
// level (default info).
func Logger(name string) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv("TLSRELAY_LOG_LEVEL"))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		Output:     stderr,
		JSONFormat: true,
	})
}

// DecodeConfig decodes a ConfigureRequest's JSON into out, refusing unknown keys so that
// a misspelt option is an error naming it rather than a silently ignored line.
func DecodeConfig(raw []byte, out any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return Errorf(CodeInvalidArgument, "config", "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}
