package chart

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestConfigCheck: the pre-install and pre-upgrade hook that refuses a
// configuration that would not load runs the image's `config validate` on
// exactly the files the release installs, with no API access.
func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantArgs []string
		files    []string // keys of the check's ConfigMap
	}{
		{
			name:     "defaults",
			wantArgs: []string{"config", "validate", "-f", "/config/config.yaml"},
			files:    []string{"config.yaml"},
		},
		{
			name:     "custom rules are checked with the configuration",
			args:     []string{"--set-file", "policies.lb_internal\\.rego=../../examples/lb-internal/lb_internal.rego", "--set", "customRules.lb-internal.mode=warn"},
			wantArgs: []string{"config", "validate", "-f", "/config/config.yaml", "--policy-dir=/config/policies"},
			files:    []string{"config.yaml", "policy.lb_internal.rego"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, "", tc.args...)
			job := one[batchv1.Job](t, r, "Job")
			if got := job.Annotations["helm.sh/hook"]; got != "pre-install,pre-upgrade" {
				t.Errorf("hook %q", got)
			}
			if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 0 || job.Spec.ActiveDeadlineSeconds == nil {
				t.Errorf("backoffLimit %v activeDeadlineSeconds %v", job.Spec.BackoffLimit, job.Spec.ActiveDeadlineSeconds)
			}
			ps := job.Spec.Template.Spec
			if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken || ps.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("automountServiceAccountToken %v restartPolicy %s", ps.AutomountServiceAccountToken, ps.RestartPolicy)
			}
			c := ps.Containers[0]
			if !reflect.DeepEqual(c.Args, tc.wantArgs) || c.Image != "portreeve/portreeve:0.1.0" {
				t.Errorf("image %s args %q, want %q", c.Image, c.Args, tc.wantArgs)
			}
			if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
				t.Errorf("terminationMessagePolicy %q", c.TerminationMessagePolicy)
			}
			if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("securityContext %+v", sc)
			}
			o, ok := r.find("ConfigMap", "portreeve-config-check")
			if !ok {
				t.Fatal("no ConfigMap portreeve-config-check")
			}
			cm := o.Typed.(*corev1.ConfigMap)
			cmWeight, err1 := strconv.Atoi(cm.Annotations["helm.sh/hook-weight"])
			jobWeight, err2 := strconv.Atoi(job.Annotations["helm.sh/hook-weight"])
			if cm.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" || err1 != nil || err2 != nil || cmWeight >= jobWeight {
				t.Errorf("ConfigMap hook annotations %v, Job %v: the ConfigMap must come first", cm.Annotations, job.Annotations)
			}
			for _, f := range tc.files {
				if _, ok := cm.Data[f]; !ok {
					t.Errorf("the check's ConfigMap lacks %s: %v", f, cm.Data)
				}
			}
			if len(cm.Data) != len(tc.files) {
				t.Errorf("the check's ConfigMap has %d files, want %v", len(cm.Data), tc.files)
			}
			if want := `apiVersion: portreeve.io/v1alpha1`; !strings.Contains(cm.Data["config.yaml"], want) {
				t.Errorf("config.yaml %q", cm.Data["config.yaml"])
			}
		})
	}
}

// TestConfigFile: a whole PolicyConfig (portreeve suggest's output) is used
// as it is, with the custom rules' modes merged in.
func TestConfigFile(t *testing.T) {
	file := writeValues(t, `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  host-network: {mode: warn}
grants:
  - name: sa-monitoring-node-exporter
    serviceAccounts: [monitoring/node-exporter]
    hostNetwork: true
    hostPorts: ["9100/TCP"]
    reason: in use by DaemonSet/node-exporter
`)
	got := renderedConfig(t, render(t, "", "--set-file", "configFile="+file, "--set", "customRules.lb-internal.mode=dryrun"))
	rules := got["rules"].(map[string]any)
	if !reflect.DeepEqual(rules, map[string]any{"host-network": map[string]any{"mode": "warn"}, "lb-internal": map[string]any{"mode": "dryrun"}}) {
		t.Errorf("rules %v", rules)
	}
	grants := got["grants"].([]any)
	if len(grants) != 1 || grants[0].(map[string]any)["name"] != "sa-monitoring-node-exporter" {
		t.Errorf("grants %v", grants)
	}
	if _, stderr, err := runHelm(t, templateArgs("", "--set", "configFile=: [")...); err == nil || !strings.Contains(stderr, "configFile") {
		t.Errorf("a configFile that is not YAML rendered: %v %s", err, stderr)
	}
}
