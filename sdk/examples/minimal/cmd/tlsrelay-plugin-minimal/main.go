// Command tlsrelay-plugin-minimal serves the minimal backend as a tlsrelay plugin.
package main

import (
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/examples/minimal"
)

func main() {
	sdk.Serve(minimal.New())
}
