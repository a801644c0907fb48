package chart

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portreeve/portreeve/policies/exposure"
)

// TestChartCoversReviewedKinds: every kind of the table Portreeve reviews
// (policies/exposure) is sent to both webhooks (the mutating one, with scope
// all, but for Ingresses and the Gateway API, which nothing rewrites) and
// may be listed and watched by its ClusterRole (the inventory and the audit
// read it), and the webhooks are sent nothing Portreeve does not review. A
// kind added on one side only fails here.
func TestChartCoversReviewedKinds(t *testing.T) {
	r := render(t, "", "--set", "webhook.mutating.scope=all")
	validating, mutating, _, _ := hooks(r)
	if h, ok := optOutHook(r); ok {
		validating = append(validating, h)
	}
	sent := func(hs []hook) map[schema.GroupVersionResource]bool {
		out := map[schema.GroupVersionResource]bool{}
		for _, h := range hs {
			for _, rule := range h.Rules {
				for _, g := range rule.APIGroups {
					for _, v := range rule.APIVersions {
						for _, res := range rule.Resources {
							out[schema.GroupVersionResource{Group: g, Version: v, Resource: res}] = true
						}
					}
				}
			}
		}
		return out
	}
	toValidate, toMutate := sent(validating), sent(mutating)
	readable := map[schema.GroupResource]bool{}
	for _, rule := range one[rbacv1.ClusterRole](t, r, "ClusterRole").Rules {
		if !slices.Contains(rule.Verbs, "list") || !slices.Contains(rule.Verbs, "watch") {
			continue
		}
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				readable[schema.GroupResource{Group: g, Resource: res}] = true
			}
		}
	}

	reviewed := map[schema.GroupVersionResource]bool{}
	for _, kind := range exposure.Kinds() {
		k := kind.String()
		gvk := kind.GroupVersionKind
		gvr := schema.GroupVersionResource{Group: kind.Group, Version: kind.Version, Resource: kind.Resource}
		reviewed[gvr] = true
		if !toValidate[gvr] {
			t.Errorf("%s is reviewed but the validating webhook is not sent %s", k, gvr)
		}
		if !toMutate[gvr] && gvk.Kind != "Ingress" && gvk.Group != exposure.GatewayGroup {
			t.Errorf("%s is reviewed but the mutating webhook is not sent %s", k, gvr)
		}
		if !readable[gvr.GroupResource()] {
			t.Errorf("%s is reviewed but the ClusterRole cannot list and watch %s", k, gvr.GroupResource())
		}
	}
	for gvr := range toValidate {
		if !reviewed[gvr] && gvr.Resource != "pods/ephemeralcontainers" && gvr.Resource != "namespaces" { // namespaces: TestOptOutWebhook
			t.Errorf("the validating webhook is sent %s, which Portreeve does not review", gvr)
		}
	}
	for gvr := range toMutate {
		if !reviewed[gvr] && gvr.Resource != "pods/ephemeralcontainers" {
			t.Errorf("the mutating webhook is sent %s, which Portreeve does not review", gvr)
		}
	}
}

const optOutWebhook = "namespaces.portreeve.io"

// optOutHook returns the validating entry that guards the namespace opt-out label.
func optOutHook(r *rendered) (hook, bool) {
	for _, o := range r.Objects {
		if w, ok := o.Typed.(*admissionregistrationv1.ValidatingWebhookConfiguration); ok {
			for _, h := range w.Webhooks {
				if h.Name == optOutWebhook {
					return hook{h.Name, h.ClientConfig, h.Rules, h.FailurePolicy, h.MatchPolicy,
						h.NamespaceSelector, h.SideEffects, h.TimeoutSeconds, h.AdmissionReviewVersions, h.MatchConditions, nil}, true
				}
			}
		}
	}
	return hook{}, false
}

// TestOptOutWebhook: Namespace writes that set the opt-out label go to
// /namespaces, whose own selector does not hide a namespace behind the label
// it checks; without an opt-out label there is nothing to guard.
func TestOptOutWebhook(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		present bool
		key     string
		policy  admissionregistrationv1.FailurePolicyType
	}{
		{"defaults", nil, true, "portreeve.io/ignore", admissionregistrationv1.Ignore},
		{"enforcing", []string{"--set", "enforcement=enforce"}, true, "portreeve.io/ignore", admissionregistrationv1.Fail},
		{"another key", []string{"--set", "webhook.ignoreLabel.key=example.com/no-portreeve"}, true, "example.com/no-portreeve", admissionregistrationv1.Ignore},
		{"no opt-out label", []string{"--set", "webhook.ignoreLabel.enabled=false"}, false, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := optOutHook(render(t, "", tc.args...))
			if ok != tc.present {
				t.Fatalf("entry present = %v", ok)
			}
			if !ok {
				return
			}
			want := []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{"CREATE", "UPDATE"},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"namespaces"}, Scope: ptrTo(admissionregistrationv1.ClusterScope)},
			}}
			if !reflect.DeepEqual(h.Rules, want) {
				t.Errorf("rules %+v", h.Rules)
			}
			if h.ClientConfig.Service == nil || *h.ClientConfig.Service.Path != "/namespaces" {
				t.Errorf("clientConfig %+v", h.ClientConfig)
			}
			if h.FailurePolicy == nil || *h.FailurePolicy != tc.policy {
				t.Errorf("failurePolicy %v, want %s", h.FailurePolicy, tc.policy)
			}
			for _, e := range h.NamespaceSelector.MatchExpressions {
				if e.Operator == "DoesNotExist" {
					t.Errorf("the selector hides namespaces with %s from the check of that label", e.Key)
				}
			}
			if len(h.MatchConditions) != 1 || !strings.Contains(h.MatchConditions[0].Expression, "'"+tc.key+"' in object.metadata") ||
				!strings.Contains(h.MatchConditions[0].Expression, "oldObject == null") {
				t.Errorf("matchConditions %+v", h.MatchConditions)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestMutatingScope: with scope auto the mutating webhook is registered only
// for the families a rule in the values can change, so that a pod no rule
// rewrites costs the apiserver one webhook call; scope all registers it for
// every family it can act on.
func TestMutatingScope(t *testing.T) {
	podEntries := []string{"pods.mutate.portreeve.io", "workloads.mutate.portreeve.io", "cronjobs.mutate.portreeve.io", "podtemplates.mutate.portreeve.io"}
	services := []string{"services.mutate.portreeve.io"}
	tests := []struct {
		name string
		args []string
		want []string // entries; nil: no MutatingWebhookConfiguration
	}{
		{"defaults: node-port-conflicts refuses at the mutating stage", nil, services},
		{"a pod rule rewrites", []string{"--set", "config.rules.host-ports.mode=rewrite"}, append(slices.Clone(podEntries), services...)},
		{"a Service rule rewrites", []string{"--set", "config.rules.node-ports.mode=rewrite", "--set", "config.rules.node-port-conflicts.mode=off"}, services},
		{"a custom rule rewrites", []string{"--set", "customRules.lb-internal.mode=rewrite"}, append(slices.Clone(podEntries), services...)},
		{"configFile rewrites", []string{"--set", "configFile=apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\nrules:\n  host-network: {mode: rewrite}\n  node-port-conflicts: {mode: off}\n"}, podEntries},
		{"nothing rewrites and node-port-conflicts is off", []string{"--set", "config.rules.node-port-conflicts.mode=off"}, nil},
		{"scope all", []string{"--set", "webhook.mutating.scope=all", "--set", "config.rules.node-port-conflicts.mode=off"}, append(slices.Clone(podEntries), services...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, "", tc.args...)
			var got []string
			present := false
			for _, o := range r.Objects {
				if w, ok := o.Typed.(*admissionregistrationv1.MutatingWebhookConfiguration); ok {
					present = true
					for _, h := range w.Webhooks {
						got = append(got, h.Name)
					}
				}
			}
			// The rotator injects the CA into (and waits for) what is registered.
			args := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args
			if told := slices.Contains(args, "--mutating-webhook=false"); told != (tc.want == nil) {
				t.Errorf("--mutating-webhook=false passed: %v, with a mutating configuration: %v", told, tc.want != nil)
			}
			if tc.want == nil {
				if present {
					t.Errorf("a MutatingWebhookConfiguration with %v, want none", got)
				}
				return
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("mutating entries %v, want %v", got, want)
			}
		})
	}
}
