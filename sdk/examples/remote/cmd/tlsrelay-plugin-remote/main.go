// Command tlsrelay-plugin-remote serves the remote example: a signer that forwards to a
// `cfssl serve` API.
package main

import (
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/examples/remote"
)

func main() { sdk.Serve(remote.New()) }
