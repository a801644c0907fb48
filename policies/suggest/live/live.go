// Package live reads from a live cluster the objects portreeve suggest
// turns into grants: workloads (not every pod), Services, Ingresses and the
// Gateway API kinds.
package live

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/portreeve/portreeve/policies/exposure"
	"github.com/portreeve/portreeve/policies/suggest"
)

// Options configure Read.
type Options struct {
	// PageSize is the limit of each list call (500 when 0).
	PageSize int64
	// IgnoreLabel: namespaces carrying this label key are reported (the
	// webhook configurations skip them); "" reads no namespaces.
	IgnoreLabel string
}

// Source is the Source of every object read from the cluster.
const Source = "cluster"

// namespaces is the resource of Namespaces.
var namespaces = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// gvr is the resource of a reviewed kind.
func gvr(k exposure.Kind) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Resource}
}

// Read lists, in every namespace and page by page, the kinds the webhooks
// review (the table of policies/exposure): Pods, PodTemplates,
// ReplicationControllers, Deployments, StatefulSets, DaemonSets, ReplicaSets,
// Jobs, CronJobs, Services, Ingresses (networking.k8s.io/v1) and, where
// their CustomResourceDefinitions are installed, Gateways, ListenerSets,
// HTTPRoutes, GRPCRoutes and TLSRoutes (gateway.networking.k8s.io/v1, the
// version the table and the webhooks name). Which of
// them count (not a ReplicaSet of a Deployment, not a Pod of a DaemonSet, but
// a Pod of an operator's custom resource) is suggest's choice, made alike for
// manifests. Kinds the cluster does not serve (a list answered NotFound,
// as for a CRD kind whose CRD is absent) are skipped; any other error
// ends the read, since a partial read would suggest too little. It also
// returns the namespaces that carry opts.IgnoreLabel, sorted.
func Read(ctx context.Context, client dynamic.Interface, opts Options) (objects []suggest.Object, ignored []string, err error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 500
	}
	for _, k := range exposure.Kinds() {
		err := pages(ctx, client, gvr(k), opts.PageSize, func(obj *unstructured.Unstructured) error {
			js, err := encode(k, obj)
			if err != nil {
				return err
			}
			objects = append(objects, suggest.Object{Source: Source, JSON: js})
			return nil
		})
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue // the cluster does not serve this kind
			}
			return nil, nil, fmt.Errorf("list %s: %w", k.Resource, err)
		}
	}
	if opts.IgnoreLabel != "" {
		err := pages(ctx, client, namespaces, opts.PageSize, func(ns *unstructured.Unstructured) error {
			if _, ok := ns.GetLabels()[opts.IgnoreLabel]; ok {
				ignored = append(ignored, ns.GetName())
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("list namespaces: %w", err)
		}
		slices.Sort(ignored)
	}
	return objects, ignored, nil
}

// pages lists gvr in every namespace with limit/continue until the server
// has no more, and calls fn for every object.
func pages(ctx context.Context, client dynamic.Interface, gvr schema.GroupVersionResource, pageSize int64, fn func(*unstructured.Unstructured) error) error {
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		page, err := client.Resource(gvr).List(ctx, opts)
		if err != nil {
			return err
		}
		for i := range page.Items {
			if err := fn(&page.Items[i]); err != nil {
				return err
			}
		}
		next := page.GetContinue()
		if next == "" {
			return nil
		}
		if next == opts.Continue {
			return fmt.Errorf("the server repeated the continue token")
		}
		opts.Continue = next
	}
}

// encode renders a listed object as JSON with the apiVersion and kind it
// was listed as (list items may carry neither) and without managedFields
// (noise, and large).
func encode(k exposure.Kind, obj *unstructured.Unstructured) ([]byte, error) {
	unstructured.RemoveNestedField(obj.Object, "metadata", "managedFields")
	obj.SetAPIVersion(schema.GroupVersion{Group: k.Group, Version: k.Version}.String())
	obj.SetKind(k.Kind)
	return json.Marshal(obj.Object)
}
