package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portreeve/portreeve/policies"
)

func newRulesCommand() *cobra.Command {
	var configPath, output string
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "List the rules with their modes and descriptions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			engine, err := policies.New(cmd.Context(), policies.Options{Config: cfg})
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
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
