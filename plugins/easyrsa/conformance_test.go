package easyrsa_test

import (
	"os"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testbin"
	"github.com/tlsrelay/tlsrelay/plugins/easyrsa"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func TestConformanceInProcess(t *testing.T) {
	plugintest.Run(t, plugintest.InProcess(func() sdk.Backend { return easyrsa.New(nil) }, nil), plugintest.Options{})
}

func TestConformanceBuiltinBinary(t *testing.T) {
	plugintest.Run(t, plugintest.Command(nil, testbin.Build(t, testbin.Tlsrelay), "plugin", "serve", "easyrsa"), plugintest.Options{})
}
