package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/inventory"
	"github.com/portreeve/portreeve/webhook/ports"
)

type portsOptions struct {
	kubeconfig, context string
	configPath          string
	configMap           string
	policyDir           string
	nodePortRange       string
	filter              ports.Filter
	port                string
	output              string
	nextFree            int
	timeout             time.Duration
}

func newPortsCommand() *cobra.Command {
	o := &portsOptions{}
	cmd := &cobra.Command{
		Use:   "ports [flags]",
		Short: "Show who holds which hostPort, nodePort and Ingress host, and what each grant has left",
		Long: "Reads a live cluster through the informers and the inventory that serve uses, once, and prints\n" +
			"who holds every hostPort (port, protocol, hostIP, nodes or node selection, holder by top owner),\n" +
			"every nodePort (Service) and every Ingress host and path; per grant of the configuration, what it\n" +
			"allows, what of its ranges is in use and by whom, what is free (counts and the next free ports)\n" +
			"and its expiry; and the conflicts that exist now. The configuration is read as serve reads it\n" +
			"(--config FILE, the chart's ConfigMap with --config-map NAMESPACE/NAME, else the built-in one).\n" +
			"Exit status: 0 when printed, 2 on bad input, configuration or cluster errors.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPorts(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)")
	f.StringVar(&o.context, "context", "", "kubeconfig context (default: the current context)")
	f.StringVar(&o.configPath, "config", "", "policy configuration file (default: the built-in configuration)")
	f.StringVar(&o.configMap, "config-map", "", "read the configuration from this ConfigMap's config.yaml instead (NAMESPACE/NAME, as the chart installs it)")
	f.StringVar(&o.policyDir, "policy-dir", "", "folder of custom Rego rules the configuration names, as for serve")
	f.StringVar(&o.nodePortRange, "node-port-range", fmt.Sprintf("%d-%d", policies.DefaultNodePortRange.From, policies.DefaultNodePortRange.To),
		"the cluster's Service NodePort range (kube-apiserver --service-node-port-range)")
	f.StringVarP(&o.filter.Namespace, "namespace", "n", "", "only holders in this namespace, the grants that may apply there and the conflicts it is part of")
	f.StringVar(&o.filter.Grant, "grant", "", "only this grant, and the holders inside its ranges and domains")
	f.StringVar(&o.port, "port", "", "only these ports (9100, 30000-30100 or 53/UDP), and the grants whose ranges include one")
	f.StringVar(&o.filter.Host, "host", "", "only this Ingress host (wildcards either way), and the grants whose domains cover it")
	f.StringVarP(&o.output, "output", "o", "table", "output format: "+strings.Join(ports.Formats, ", "))
	f.IntVar(&o.nextFree, "next-free", 5, "free ports listed per grant range")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the informers' initial lists")
	return cmd
}

func runPorts(cmd *cobra.Command, o *portsOptions) error {
	bad := func(err error) error { return &exitError{code: 2, err: err} }
	var errs []error
	if !slices.Contains(ports.Formats, o.output) {
		errs = append(errs, fmt.Errorf("-o must be one of %s, got %q", strings.Join(ports.Formats, ", "), o.output))
	}
	span, err := inventory.ParseNodePortRange(o.nodePortRange)
	if err != nil {
		errs = append(errs, fmt.Errorf("--node-port-range: %w", err))
	}
	if o.port != "" {
		if o.filter.Port, err = ports.ParsePort(o.port); err != nil {
			errs = append(errs, fmt.Errorf("--port: %w", err))
		}
	}
	if o.configPath != "" && o.configMap != "" {
		errs = append(errs, errors.New("--config and --config-map name two configurations: pass one"))
	}
	if ns, name, ok := strings.Cut(o.configMap, "/"); o.configMap != "" && (!ok || ns == "" || name == "") {
		errs = append(errs, fmt.Errorf("--config-map %q: want NAMESPACE/NAME", o.configMap))
	}
	if o.nextFree < 0 || o.timeout <= 0 {
		errs = append(errs, errors.New("--next-free must be 0 or more and --timeout positive"))
	}
	if len(errs) > 0 {
		return bad(errors.Join(errs...))
	}
	restCfg, err := kubeconfigFor(o.kubeconfig, o.context)
	if err != nil {
		return bad(fmt.Errorf("kubeconfig: %w", err))
	}
	restCfg.UserAgent = "portreeve-ports/" + version
	// The informers' errors (a list that RBAC forbids) reach standard error through client-go's klog.
	logf.SetLogger(logr.Discard())
	cfg, err := portsConfig(cmd.Context(), restCfg, o)
	if err != nil {
		return bad(err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	inv, err := inventory.Load(ctx, restCfg, inventory.Options{NodePortRange: span})
	if err != nil {
		return bad(err)
	}
	rep, err := ports.Build(inv.Snapshot(), cfg, inv.GrantUsage(cfg, o.nextFree), o.filter)
	if err != nil {
		return bad(err)
	}
	if err := ports.Write(cmd.OutOrStdout(), rep, o.output); err != nil {
		return bad(err)
	}
	return nil
}

// portsConfig reads the configuration as serve does: a file, else the
// chart's ConfigMap (--config-map), else the built-in one.
func portsConfig(ctx context.Context, restCfg *rest.Config, o *portsOptions) (*policies.Config, error) {
	if o.configMap == "" {
		set, err := loadPolicySet(o.configPath, o.policyDir)
		if err != nil {
			return nil, err
		}
		return set.config, nil
	}
	ns, name, _ := strings.Cut(o.configMap, "/") // checked with the flags
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("--config-map: %w", err)
	}
	data, ok := cm.Data["config.yaml"]
	if !ok {
		return nil, fmt.Errorf("--config-map: ConfigMap %s has no config.yaml", o.configMap)
	}
	modules, err := readPolicyDir(o.policyDir)
	if err != nil {
		return nil, err
	}
	cfg, err := parseConfig([]byte(data), modules)
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s: %w", o.configMap, err)
	}
	return cfg, nil
}

// kubeconfigFor loads a client configuration as client-go's tools do:
// --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else in-cluster;
// --context picks a context.
func kubeconfigFor(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
}
