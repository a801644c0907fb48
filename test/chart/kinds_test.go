package chart

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portreeve/portreeve/webhook/review"
)

// TestChartCoversReviewedKinds: every kind Portreeve reviews is sent to both
// webhooks (the mutating one but for Ingresses, which nothing rewrites) and
// may be listed and watched by its ClusterRole (the inventory and the audit
// read it), and the webhooks are sent nothing Portreeve does not review. A
// kind added on one side only fails here.
func TestChartCoversReviewedKinds(t *testing.T) {
	r := render(t, "")
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
	for _, k := range review.SupportedKinds() {
		parts := strings.Split(k, "/")
		gvk := schema.GroupVersionKind{Version: parts[0], Kind: parts[1]}
		if len(parts) == 3 {
			gvk = schema.GroupVersionKind{Group: parts[0], Version: parts[1], Kind: parts[2]}
		}
		gvr, _ := meta.UnsafeGuessKindToResource(gvk)
		reviewed[gvr] = true
		if !toValidate[gvr] {
			t.Errorf("%s is reviewed but the validating webhook is not sent %s", k, gvr)
		}
		if !toMutate[gvr] && gvk.Kind != "Ingress" {
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
