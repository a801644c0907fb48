package chart

import (
	"slices"
	"strings"
	"testing"

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
		if !reviewed[gvr] && gvr.Resource != "pods/ephemeralcontainers" {
			t.Errorf("the validating webhook is sent %s, which Portreeve does not review", gvr)
		}
	}
	for gvr := range toMutate {
		if !reviewed[gvr] && gvr.Resource != "pods/ephemeralcontainers" {
			t.Errorf("the mutating webhook is sent %s, which Portreeve does not review", gvr)
		}
	}
}
