// Command portreeve serves Portreeve's admission webhooks and runs the policy
// author's offline commands.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		code := 2
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
			if ee.err != nil {
				fmt.Fprintln(os.Stderr, "portreeve:", ee.err)
			}
		} else {
			fmt.Fprintln(os.Stderr, "portreeve:", err)
		}
		os.Exit(code)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "portreeve",
		Short:         "Admission policy for how workloads expose themselves outside the cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand(), newEvalCommand(), newRulesCommand(), newVersionCommand())
	root.AddCommand(newTestCommand(), newExplainCommand(), newAuditCommand(), newSuggestCommand())
	root.AddCommand(newConfigCommand(), newProbeCommand(), newPortsCommand())
	return root
}
