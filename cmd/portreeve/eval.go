package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// evalUser is the requester of offline reviews: a user with no grants of its own.
var evalUser = policies.User{Username: "portreeve:eval", Groups: []string{"system:authenticated"}}

func loadConfig(path string) (*policies.Config, error) {
	if path == "" {
		return policies.DefaultConfig(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return policies.ParseConfig(b, nil)
}

func newEvalCommand() *cobra.Command {
	var (
		configPath string
		policyDir  string
		output     string
		files      []string
		rf         requestFlags
	)
	cmd := &cobra.Command{
		Use:   "eval -f FILE|DIR|- [flags]",
		Short: "Evaluate manifests offline with the same rules and logic as the webhooks",
		Long: "Evaluates every object in the manifests as a CREATE (by a user with no grants of its own unless --as says):\n" +
			"the mutating review first, then the validating review of its result.\n" +
			"Exit status: 0 when every object is allowed, 1 when any is denied, 2 on bad input or config.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return &exitError{code: 2, err: fmt.Errorf("no input: pass -f FILE, -f DIR or -f -")}
			}
			if output != "text" && output != "json" {
				return &exitError{code: 2, err: fmt.Errorf("-o must be text or json, got %q", output)}
			}
			set, err := loadPolicySet(configPath, policyDir)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			engine, err := policies.New(cmd.Context(), policies.Options{Config: set.config, Modules: set.modules})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ms, err := readManifests(files, cmd.InOrStdin())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if len(ms) == 0 {
				return &exitError{code: 2, err: fmt.Errorf("no objects in %s", strings.Join(files, ", "))}
			}
			reviewer := review.NewReviewer(engine)
			reports := make([]*review.Report, 0, len(ms))
			for _, m := range ms {
				req, err := review.ObjectRequest(m.JSON, rf.namespace, rf.requester())
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", m.Source, err)}
				}
				req.NamespaceLabels = rf.nsLabels
				rep, err := reviewer.ReviewRequest(cmd.Context(), req)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", m.Source, err)}
				}
				rep.Source = m.Source
				reports = append(reports, rep)
			}
			if err := printReports(cmd.OutOrStdout(), output, reports); err != nil {
				return &exitError{code: 2, err: err}
			}
			for _, r := range reports {
				if !r.Allowed {
					return &exitError{code: 1}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "policy configuration file (default: the built-in configuration)")
	cmd.Flags().StringVar(&policyDir, "policy-dir", "", "folder of custom Rego rules, as for serve --policy-dir: they are evaluated, and the configuration may name their rule ids")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory or - for stdin (repeatable)")
	rf.addFlags(cmd.Flags())
	return cmd
}

func printReports(w io.Writer, output string, reports []*review.Report) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	var b strings.Builder
	counts := map[string]int{}
	for _, r := range reports {
		verdict := "ALLOWED"
		switch {
		case !r.Allowed:
			verdict = "DENIED"
		case len(r.Patch) > 0:
			verdict = "REWRITTEN"
		case r.Skipped != "":
			verdict = "SKIPPED"
		}
		counts[verdict]++
		fmt.Fprintf(&b, "%-9s %s %s/%s", verdict, r.Kind, r.Namespace, r.Name)
		if r.Source != "" {
			fmt.Fprintf(&b, " (%s)", r.Source)
		}
		b.WriteString("\n")
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "  denied:  %s\n", v.Message)
		}
		for _, wn := range r.Warnings {
			fmt.Fprintf(&b, "  warning: %s\n", wn)
		}
		for _, d := range r.DryRun {
			fmt.Fprintf(&b, "  dryrun:  %s\n", d.Message)
		}
		if r.Skipped != "" {
			fmt.Fprintf(&b, "  %s\n", r.Skipped)
		}
	}
	fmt.Fprintf(&b, "%d objects: %d allowed, %d rewritten, %d denied, %d skipped\n",
		len(reports), counts["ALLOWED"], counts["REWRITTEN"], counts["DENIED"], counts["SKIPPED"])
	_, err := io.WriteString(w, b.String())
	return err
}
