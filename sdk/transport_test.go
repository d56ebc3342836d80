package sdk

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
)

// A plugin's leaf from PluginIdentity serves the host that issued it, and refuses a
// client with another host's identity: mutual TLS, both sides verified.
func TestTransportIdentity(t *testing.T) {
	host, err := NewHostIdentity()
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := NewHostIdentity()
	leaf, err := host.PluginIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(leaf, []byte("PRIVATE KEY")) {
		t.Fatal("the plugin's identity carries no key")
	}
	id, err := ReadTransportIdentity(bytes.NewReader(leaf))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"the issuing host", host.ClientConfig(), true},
		{"another host", stranger.ClientConfig(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			defer s.Close()
			serverErr := make(chan error, 1)
			go func() {
				srv := tls.Server(s, id.ServerConfig())
				serverErr <- srv.Handshake()
				srv.Close()
			}()
			clientErr := tls.Client(c, tt.client).Handshake()
			c.Close()
			sErr := <-serverErr
			if ok := clientErr == nil && sErr == nil; ok != tt.ok {
				t.Fatalf("handshake: client %v, server %v; want success %v", clientErr, sErr, tt.ok)
			}
		})
	}
	if _, err := ReadTransportIdentity(bytes.NewReader(leaf[:len(leaf)/2])); err == nil {
		t.Fatal("a truncated identity was read")
	}
}
