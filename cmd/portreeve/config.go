package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/spf13/cobra"

	"github.com/portreeve/portreeve/policies"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the policy configuration before it lands",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newConfigValidateCommand())
	return cmd
}

func newConfigValidateCommand() *cobra.Command {
	var file, policyDir string
	cmd := &cobra.Command{
		Use:   "validate -f FILE|- [--policy-dir DIR]",
		Short: "Check a policy configuration as serve would load it, reporting every problem at once",
		Long: "Reads a policy configuration (a PolicyConfig document, YAML or JSON) as serve --config does,\n" +
			"with the custom rules of --policy-dir as serve --policy-dir does, and builds the policy set serve\n" +
			"would serve. When it is valid, one line on stdout says so. When it is not, every problem is one\n" +
			"line on stderr (FILE: key.path: what is wrong), then a count.\n" +
			"Exit status: 0 when valid, 2 when not or when a file cannot be read.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return &exitError{code: 2, err: errors.New("no input: pass -f FILE or -f - for stdin")}
			}
			name, data, err := readConfigInput(file, cmd.InOrStdin())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			summary, problems := validateConfig(cmd.Context(), name, data, policyDir)
			if len(problems) > 0 {
				n := len(problems)
				if policyDir == "" && strings.Contains(strings.Join(problems, "\n"), "unknown rule") {
					problems = append(problems, "note: the ids of custom rules are known only with --policy-dir")
				}
				problems = append(problems, fmt.Sprintf("%s: invalid (%s)", name, countNoun(n, "problem")))
				fmt.Fprintln(cmd.ErrOrStderr(), strings.Join(problems, "\n"))
				return &exitError{code: 2}
			}
			fmt.Fprintln(cmd.OutOrStdout(), summary)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "policy configuration file, or - for stdin")
	cmd.Flags().StringVar(&policyDir, "policy-dir", "", "folder of custom Rego rules, as for serve: their rule ids may be configured, and they must compile")
	return cmd
}

func readConfigInput(file string, stdin io.Reader) (name string, data []byte, err error) {
	if file == "-" {
		data, err = readBounded("<stdin>", stdin)
		return "<stdin>", data, err
	}
	data, err = readPolicyFile(file)
	return file, data, err
}

// validateConfig judges a configuration and the modules of policyDir as
// serve does at start-up (loadPolicySet, then the engine), but goes on after
// a problem so that it reports them all. It returns a summary when all is
// well, else one line per problem.
func validateConfig(ctx context.Context, name string, data []byte, policyDir string) (summary string, problems []string) {
	modules, err := readPolicyDir(policyDir)
	if err != nil {
		problems = append(problems, messageLines(err)...)
	} else if len(modules) > 0 {
		if _, err := policies.New(ctx, policies.Options{Modules: modules}); err != nil {
			problems = append(problems, moduleProblems(err)...)
		}
	}
	cfg, err := parseConfig(data, modules)
	if err != nil {
		problems = append(problems, configProblems(name, err)...)
	}
	if len(problems) > 0 {
		return "", problems
	}
	set := &policySet{configBytes: data, config: cfg, modules: modules}
	opts := defaultAuthoringOptions()
	if _, err := opts.newEngine(ctx, set, nil); err != nil {
		return "", moduleProblems(err)
	}
	summary = fmt.Sprintf("%s: valid (%s, %s, %s", name, countNoun(len(cfg.Grants), "grant"),
		countNoun(len(cfg.Exemptions), "exemption"), countNoun(len(cfg.Rules), "rule mode"))
	if len(modules) > 0 {
		summary += ", " + countNoun(len(policies.CustomRuleIDs(modules)), "custom rule")
	}
	return summary + ")", nil
}

// configProblems is one line per problem of a configuration: FILE: path: message.
func configProblems(name string, err error) []string {
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	var lines []string
	for _, e := range errs {
		var ce *policies.ConfigError
		switch {
		case !errors.As(e, &ce):
			for _, l := range messageLines(e) {
				lines = append(lines, name+": "+l)
			}
		case ce.Path == "":
			lines = append(lines, name+": "+ce.Message)
		default:
			lines = append(lines, name+": "+ce.Path+": "+ce.Message)
		}
	}
	return lines
}

// moduleProblems is one line per problem of the custom modules: Rego
// errors as file:row: code: message, without their source excerpts.
func moduleProblems(err error) []string {
	var regoErrs []*ast.Error
	collectRegoErrors(err, &regoErrs)
	if len(regoErrs) == 0 {
		return messageLines(err)
	}
	lines := make([]string, len(regoErrs))
	for i, e := range regoErrs {
		lines[i] = e.Code + ": " + e.Message
		if e.Location != nil {
			lines[i] = fmt.Sprintf("%s:%d: %s", e.Location.File, e.Location.Row, lines[i])
		}
	}
	return lines
}

func collectRegoErrors(err error, out *[]*ast.Error) {
	switch e := err.(type) {
	case *ast.Error:
		*out = append(*out, e)
	case ast.Errors:
		*out = append(*out, e...)
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			collectRegoErrors(inner, out)
		}
	case interface{ Unwrap() error }:
		collectRegoErrors(e.Unwrap(), out)
	}
}

func messageLines(err error) []string {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func countNoun(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
