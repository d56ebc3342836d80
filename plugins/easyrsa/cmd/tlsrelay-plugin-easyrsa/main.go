// Command tlsrelay-plugin-easyrsa is the easy-rsa backend as a standalone plugin binary.
package main

import (
	"github.com/tlsrelay/tlsrelay/plugins/easyrsa"
	"github.com/tlsrelay/tlsrelay/sdk"
)

func main() {
	sdk.Serve(easyrsa.New(sdk.Logger(easyrsa.Name)))
}
