package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/suggest"
	"github.com/portreeve/portreeve/policies/suggest/live"
	"github.com/portreeve/portreeve/webhook/inventory"
)

type suggestOptions struct {
	files              []string
	namespace          string
	kubeconfig         string
	context            string
	output             string
	merge              string
	policyDir          string
	portreeveNamespace string
	exclude            []string
	ignoreLabel        string
	nodePortRange      string
	widen              bool
	wildcardDomains    bool
	expires            string
	failOnConflict     bool
	pageSize           int64
}

func newSuggestCommand() *cobra.Command {
	o := &suggestOptions{}
	cmd := &cobra.Command{
		Use:   "suggest [-f FILE|DIR|-]... [flags]",
		Short: "Suggest the grants under which every existing workload is admitted, and nothing wider",
		Long: "Reads the workloads, Services, Ingresses and Gateway API objects (where their CRDs are served) of a live\n" +
			"cluster (or manifests with -f), reviews each as `portreeve eval` does under the configuration it adds to\n" +
			"(--merge FILE, else the built-in one), with every rule denying, and writes that configuration plus one\n" +
			"grant per holder group for exactly what the rules denied: a policy configuration that `serve --config`\n" +
			"and `eval --config` accept as it is.\n" +
			"The report (new grants, skipped objects, conflicts no grant can fix, objects still refused) goes to\n" +
			"standard error. See docs/suggest.md.\n" +
			"Exit status: 0 when the configuration was written (also with conflicts, unless --fail-on-conflict: then 1),\n" +
			"2 on bad input, configuration or cluster errors.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSuggest(cmd, o) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "manifest file, directory or - for stdin (repeatable); without it, the live cluster is read")
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace of manifest objects that name none (default \"default\")")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)")
	f.StringVar(&o.context, "context", "", "kubeconfig context (default: the current context)")
	f.StringVar(&o.output, "output", "", "write the configuration to this file instead of standard output")
	f.StringVar(&o.merge, "merge", "", "configuration to add to: its rule modes, grants and exemptions are kept unchanged (default: the built-in configuration)")
	f.StringVar(&o.policyDir, "policy-dir", "", "folder of custom Rego rules the --merge configuration names, as for serve")
	f.StringVar(&o.portreeveNamespace, "portreeve-namespace", "portreeve-system", "Portreeve's own namespace, never reviewed (kube-system never is either)")
	f.StringArrayVar(&o.exclude, "exclude-namespace", nil, "another namespace the webhooks never review (serve --exempt-namespaces; repeatable)")
	f.StringVar(&o.ignoreLabel, "ignore-label", "portreeve.io/ignore", "live cluster: namespaces with this label are never reviewed (empty: none)")
	f.StringVar(&o.nodePortRange, "node-port-range", "30000-32767", "the cluster's Service NodePort range (kube-apiserver --service-node-port-range)")
	f.BoolVar(&o.widen, "widen", false, "grant ranges: hostPorts from the lowest to the highest port in use per grant and protocol, nodePorts the whole --node-port-range")
	f.BoolVar(&o.wildcardDomains, "wildcard-domains", false, "grant *.parent instead of each Ingress, listener or route host of three labels or more")
	f.StringVar(&o.expires, "expires", "", "set expires on every new grant: a date (2027-06-30) or an RFC 3339 time")
	f.BoolVar(&o.failOnConflict, "fail-on-conflict", false, "exit 1 when something could not be granted (conflicts, inexact exposure, objects still refused)")
	f.Int64Var(&o.pageSize, "page-size", 500, "live cluster: objects per list call")
	return cmd
}

func runSuggest(cmd *cobra.Command, o *suggestOptions) error {
	bad := func(err error) error { return &exitError{code: 2, err: err} }
	span, err := inventory.ParseNodePortRange(o.nodePortRange)
	if err != nil {
		return bad(fmt.Errorf("--node-port-range: %w", err))
	}
	if o.pageSize < 1 {
		return bad(fmt.Errorf("--page-size must be positive"))
	}
	set, err := loadPolicySet(o.merge, o.policyDir)
	if err != nil {
		return bad(err)
	}
	opts := suggest.Options{
		Base:            set.config,
		Modules:         set.modules,
		Namespace:       o.namespace,
		NodePortRange:   span,
		Widen:           o.widen,
		WildcardDomains: o.wildcardDomains,
		Expires:         o.expires,
		SkipNamespaces:  map[string]string{"kube-system": ""},
	}
	if err := suggest.CheckExpires(o.expires, time.Now()); err != nil {
		return bad(err)
	}
	if o.portreeveNamespace != "" {
		opts.SkipNamespaces[o.portreeveNamespace] = "Portreeve's own namespace"
	}
	for _, ns := range o.exclude {
		opts.SkipNamespaces[ns] = "--exclude-namespace"
	}

	var objects []suggest.Object
	if len(o.files) > 0 {
		ms, err := readManifests(o.files, cmd.InOrStdin())
		if err != nil {
			return bad(err)
		}
		for _, m := range ms {
			objects = append(objects, suggest.Object{Source: m.Source, JSON: m.JSON})
		}
	} else {
		client, err := suggestClient(o.kubeconfig, o.context)
		if err != nil {
			return bad(fmt.Errorf("kubeconfig: %w", err))
		}
		var ignored []string
		objects, ignored, err = live.Read(cmd.Context(), client, live.Options{PageSize: o.pageSize, IgnoreLabel: o.ignoreLabel})
		if err != nil {
			return bad(err)
		}
		for _, ns := range ignored {
			if _, ok := opts.SkipNamespaces[ns]; !ok {
				opts.SkipNamespaces[ns] = "labelled " + o.ignoreLabel
			}
		}
	}

	res, err := suggest.Suggest(cmd.Context(), objects, opts)
	if err != nil {
		return bad(err)
	}
	out, err := suggest.Marshal(res.Config, policies.CustomRuleIDs(set.modules))
	if err != nil {
		return bad(err)
	}
	if o.output != "" {
		if err := os.WriteFile(o.output, out, 0o644); err != nil {
			return bad(err)
		}
	} else if _, err := cmd.OutOrStdout().Write(out); err != nil {
		return bad(err)
	}
	if err := res.WriteReport(cmd.ErrOrStderr()); err != nil {
		return bad(err)
	}
	if o.failOnConflict && res.Unresolved() {
		return &exitError{code: 1, err: fmt.Errorf("some exposure could not be granted (--fail-on-conflict)")}
	}
	return nil
}

// suggestClient builds a dynamic client as client-go's tools do: --kubeconfig,
// else $KUBECONFIG, else ~/.kube/config, else the in-cluster configuration;
// --context picks a context.
func suggestClient(kubeconfig, context string) (dynamic.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "portreeve-suggest/" + version
	return dynamic.NewForConfig(cfg)
}
