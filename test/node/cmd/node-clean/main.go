// Command node-clean tears down a test node stack whose process died
// without doing so (a test binary killed on a timeout): it takes the host
// lock, undoes what the stack's record lists and checks the host against the
// snapshot taken before that stack started. It exits non-zero if something
// is left, and refuses while a node stack runs.
//
//	go run ./test/node/cmd/node-clean      (make node-clean)
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/portreeve/portreeve/test/node"
)

func main() {
	if err := node.Clean(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "node-clean:", err)
		os.Exit(1)
	}
	fmt.Println("node-clean: no node stack left on this host")
}
