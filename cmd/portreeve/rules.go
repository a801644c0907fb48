package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portreeve/portreeve/policies"
)

func newRulesCommand() *cobra.Command {
	var configPath, policyDir, output string
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "List the rules with their modes and descriptions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := loadPolicySet(configPath, policyDir)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			engine, err := policies.New(cmd.Context(), policies.Options{Config: set.config, Modules: set.modules})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(engine.Rules())
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RULE\tMODE\tDESCRIPTION")
			for _, r := range engine.Rules() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, r.Mode, r.Title)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "policy configuration file (default: the built-in configuration)")
	cmd.Flags().StringVar(&policyDir, "policy-dir", "", "folder of custom Rego rules, as for serve --policy-dir: listed with the built-in ones")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
