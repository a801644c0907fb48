package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portreeve/portreeve/webhook/offline"
	"github.com/portreeve/portreeve/webhook/review"
)

func newEvalCommand() *cobra.Command {
	var (
		output string
		files  []string
		df     decisionFlags
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
			if output != "text" && output != "json" && output != "junit" {
				return &exitError{code: 2, err: fmt.Errorf("-o must be text, json or junit, got %q", output)}
			}
			settings, err := df.settings()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			engine, err := settings.NewEngine(cmd.Context())
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
			useNamespaces(settings, ms)
			reviewer := settings.NewReviewer(engine)
			reports := make([]*offline.Report, 0, len(ms))
			for _, m := range ms {
				rep, err := evalOne(cmd.Context(), settings, reviewer, m)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", m.Source, err)}
				}
				reports = append(reports, rep)
			}
			if output == "junit" {
				err = evalJUnit(reports, engine.Rules()).Write(cmd.OutOrStdout())
			} else {
				err = offline.WriteReports(cmd.OutOrStdout(), output, reports)
			}
			if err != nil {
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
	df.addFlags(cmd.Flags(), forManifests, evalUser)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or junit (a test suite per object, a test case per rule, failed when it denies)")
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory or - for stdin (repeatable)")
	return cmd
}

// evalOne reviews one manifest object through the offline review.
func evalOne(ctx context.Context, settings *offline.Settings, reviewer *review.Reviewer, m manifest) (*offline.Report, error) {
	req, err := settings.Request(m.JSON)
	if err != nil {
		return nil, err
	}
	out, err := offline.Review(ctx, reviewer, req)
	if err != nil {
		return nil, err
	}
	return out.Report(m.Source)
}

// useNamespaces gives the objects of the manifests the labels of the
// Namespace manifests among them.
func useNamespaces(settings *offline.Settings, ms []manifest) {
	raws := make([][]byte, len(ms))
	for i, m := range ms {
		raws[i] = m.JSON
	}
	settings.UseNamespaces(raws)
}
