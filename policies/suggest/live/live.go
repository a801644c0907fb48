// Package live reads from a live cluster the objects portreeve suggest
// turns into grants: workloads (not every pod), Services and Ingresses.
package live

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

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

// Read lists, in every namespace and page by page, the kinds the webhooks
// review that stand for workloads: Deployments, DaemonSets, StatefulSets,
// ReplicaSets, Jobs, CronJobs, ReplicationControllers, PodTemplates, Pods,
// Services and Ingresses (networking.k8s.io/v1). Which of them count (not a
// ReplicaSet of a Deployment, not a Pod of a DaemonSet, but a Pod of an
// operator's custom resource) is suggest's choice, made alike for manifests.
// Kinds the cluster does not serve are skipped; any other error ends the
// read, since a partial read would suggest too little. It also returns the
// namespaces that carry opts.IgnoreLabel, sorted.
func Read(ctx context.Context, client kubernetes.Interface, opts Options) (objects []suggest.Object, ignored []string, err error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 500
	}
	add := func(apiVersion, kind string, obj any) error {
		js, err := encode(apiVersion, kind, obj)
		if err != nil {
			return err
		}
		objects = append(objects, suggest.Object{Source: Source, JSON: js})
		return nil
	}
	core, apps, batch, networking := client.CoreV1(), client.AppsV1(), client.BatchV1(), client.NetworkingV1()
	lists := []struct {
		resource string
		list     func(metav1.ListOptions) (string, error)
	}{
		{"deployments", func(o metav1.ListOptions) (string, error) {
			l, err := apps.Deployments("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "apps/v1", "Deployment", add)
		}},
		{"daemonsets", func(o metav1.ListOptions) (string, error) {
			l, err := apps.DaemonSets("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "apps/v1", "DaemonSet", add)
		}},
		{"statefulsets", func(o metav1.ListOptions) (string, error) {
			l, err := apps.StatefulSets("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "apps/v1", "StatefulSet", add)
		}},
		{"replicasets", func(o metav1.ListOptions) (string, error) {
			l, err := apps.ReplicaSets("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "apps/v1", "ReplicaSet", add)
		}},
		{"jobs", func(o metav1.ListOptions) (string, error) {
			l, err := batch.Jobs("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "batch/v1", "Job", add)
		}},
		{"cronjobs", func(o metav1.ListOptions) (string, error) {
			l, err := batch.CronJobs("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "batch/v1", "CronJob", add)
		}},
		{"replicationcontrollers", func(o metav1.ListOptions) (string, error) {
			l, err := core.ReplicationControllers("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "v1", "ReplicationController", add)
		}},
		{"podtemplates", func(o metav1.ListOptions) (string, error) {
			l, err := core.PodTemplates("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "v1", "PodTemplate", add)
		}},
		{"pods", func(o metav1.ListOptions) (string, error) {
			l, err := core.Pods("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "v1", "Pod", add)
		}},
		{"services", func(o metav1.ListOptions) (string, error) {
			l, err := core.Services("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "v1", "Service", add)
		}},
		{"ingresses", func(o metav1.ListOptions) (string, error) {
			l, err := networking.Ingresses("").List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.Continue, addAll(l.Items, "networking.k8s.io/v1", "Ingress", add)
		}},
	}
	for _, k := range lists {
		if err := pages(opts.PageSize, k.list); err != nil {
			if apierrors.IsNotFound(err) {
				continue // the cluster does not serve this kind
			}
			return nil, nil, fmt.Errorf("list %s: %w", k.resource, err)
		}
	}
	if opts.IgnoreLabel != "" {
		err := pages(opts.PageSize, func(o metav1.ListOptions) (string, error) {
			l, err := core.Namespaces().List(ctx, o)
			if err != nil {
				return "", err
			}
			for _, ns := range l.Items {
				if _, ok := ns.Labels[opts.IgnoreLabel]; ok {
					ignored = append(ignored, ns.Name)
				}
			}
			return l.Continue, nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("list namespaces: %w", err)
		}
		slices.Sort(ignored)
	}
	return objects, ignored, nil
}

// pages calls list with limit/continue until the server has no more.
func pages(pageSize int64, list func(metav1.ListOptions) (string, error)) error {
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		next, err := list(opts)
		if err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		if next == opts.Continue {
			return fmt.Errorf("the server repeated the continue token")
		}
		opts.Continue = next
	}
}

// addAll hands every item of a page to add.
func addAll[T any](items []T, apiVersion, kind string, add func(string, string, any) error) error {
	for i := range items {
		if err := add(apiVersion, kind, &items[i]); err != nil {
			return err
		}
	}
	return nil
}

// encode renders a listed object as JSON with its apiVersion and kind (list
// items carry neither) and without managedFields (noise, and large).
func encode(apiVersion, kind string, obj any) ([]byte, error) {
	o, ok := obj.(interface {
		metav1.Object
		GetObjectKind() schema.ObjectKind
	})
	if !ok {
		return nil, fmt.Errorf("%T is not a Kubernetes object", obj)
	}
	o.SetManagedFields(nil)
	o.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(apiVersion, kind))
	return json.Marshal(o)
}
