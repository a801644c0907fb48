package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/portreeve/portreeve/webhook/explain"
)

func newExplainCommand() *cobra.Command {
	var (
		files  []string
		output string
		df     decisionFlags
	)
	cmd := &cobra.Command{
		Use:   "explain -f FILE|DIR|- [flags]",
		Short: "Explain, per object, which rules match, which grant allows it or why none applies, and what a rewrite changes",
		Long: "Reviews every object as a CREATE (mutating, then validating) and explains the outcome:\n" +
			"  - every rule that governs the object's exposure (one that would deny it with no grant and no exemption),\n" +
			"    what it decided, and which grant allowed it or which exemption lifted it;\n" +
			"  - every grant and exemption of the configuration, with why it does not apply (other namespace,\n" +
			"    other service account, other user or groups, expired);\n" +
			"  - for rewrites, each change with its reason and a before/after diff of the object.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return &exitError{code: 2, err: fmt.Errorf("no input: pass -f FILE, -f DIR or -f -")}
			}
			if output != "text" && output != "json" {
				return &exitError{code: 2, err: fmt.Errorf("-o must be text or json, got %q", output)}
			}
			settings, err := df.settings()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ms, err := readManifests(files, cmd.InOrStdin())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			useNamespaces(settings, ms)
			x := explain.New(settings)
			var out []*explain.Explanation
			for _, m := range ms {
				req, err := settings.Request(m.JSON)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", m.Source, err)}
				}
				e, err := x.Explain(cmd.Context(), req)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", m.Source, err)}
				}
				out = append(out, e)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			for i, e := range out {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				explain.Write(cmd.OutOrStdout(), e)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory or - for stdin (repeatable)")
	df.addFlags(cmd.Flags(), forManifests, evalUser)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
