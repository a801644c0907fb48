package inventory

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portreeve/portreeve/policies/exposure"
)

// The informers watch the reviewed kinds as typed objects: the apiserver
// sends them as protobuf, which decodes several times faster than JSON into
// maps (measured through a real apiserver, unstructured informers doubled
// Portreeve's CPU per pod created). Before the one extraction reads an object
// (as a map, like a review's object), the transform trims it in place to what
// the extraction reads, so that the conversion to a map stays small.

// typedObject is a new typed object of kind k.
func typedObject(k *exposure.Kind) (client.Object, error) {
	gvk := schema.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind}
	o, err := clientgoscheme.Scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	o.GetObjectKind().SetGroupVersionKind(gvk)
	return o.(client.Object), nil
}

// toMap trims the typed object obj in place and converts what is left to
// the map the extraction reads.
func toMap(obj runtime.Object) (map[string]any, error) {
	if m, err := apimeta.Accessor(obj); err == nil {
		m.SetLabels(nil)
		m.SetAnnotations(nil)
		m.SetManagedFields(nil)
		m.SetFinalizers(nil)
	}
	if spec := podSpecOf(obj); spec != nil {
		*spec = trimPodSpec(spec)
		if m, ok := podObjectMap(obj, spec); ok {
			return m, nil
		}
	}
	return runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
}

// podSpecOf returns the pod spec of a typed object of a reviewed kind.
func podSpecOf(obj runtime.Object) *corev1.PodSpec {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &o.Spec
	case *corev1.PodTemplate:
		return &o.Template.Spec
	case *corev1.ReplicationController:
		if o.Spec.Template != nil {
			return &o.Spec.Template.Spec
		}
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return &o.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &o.Spec.Template.Spec
	case *appsv1.ReplicaSet:
		return &o.Spec.Template.Spec
	case *batchv1.Job:
		return &o.Spec.Template.Spec
	case *batchv1.CronJob:
		return &o.Spec.JobTemplate.Spec.Template.Spec
	}
	return nil
}

// trimPodSpec keeps what the extraction reads of a pod spec: the host
// network, the node scope, the service account, and each container's name
// and ports (they are not looked into here).
func trimPodSpec(s *corev1.PodSpec) corev1.PodSpec {
	out := corev1.PodSpec{
		HostNetwork: s.HostNetwork, NodeName: s.NodeName, NodeSelector: s.NodeSelector,
		ServiceAccountName: s.ServiceAccountName, DeprecatedServiceAccount: s.DeprecatedServiceAccount,
	}
	if len(s.InitContainers) > 0 {
		out.InitContainers = make([]corev1.Container, len(s.InitContainers))
		for i, c := range s.InitContainers {
			out.InitContainers[i] = corev1.Container{Name: c.Name, Ports: c.Ports}
		}
	}
	out.Containers = make([]corev1.Container, len(s.Containers))
	for i, c := range s.Containers {
		out.Containers[i] = corev1.Container{Name: c.Name, Ports: c.Ports}
	}
	if len(s.EphemeralContainers) > 0 {
		out.EphemeralContainers = make([]corev1.EphemeralContainer, len(s.EphemeralContainers))
		for i, c := range s.EphemeralContainers {
			out.EphemeralContainers[i].Name, out.EphemeralContainers[i].Ports = c.Name, c.Ports
		}
	}
	return out
}
