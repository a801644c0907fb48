package inventory

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// podObjectMap builds by hand the map the extraction reads of a typed object
// with a (trimmed) pod spec: its metadata, what makes it an active holder
// (a Pod's phase, a workload's replicas, a Job's conditions, a CronJob's
// suspension) and the pod spec where its kind keeps it. Reflection's
// ToUnstructured was most of what the informers' transform cost per pod;
// TestPodObjectMapIsUnstructured holds the two to the same exposure.
func podObjectMap(obj runtime.Object, spec *corev1.PodSpec) (map[string]any, bool) {
	m, err := apimeta.Accessor(obj)
	if err != nil {
		return nil, false
	}
	md := map[string]any{"name": m.GetName(), "namespace": m.GetNamespace(), "resourceVersion": m.GetResourceVersion()}
	if refs := m.GetOwnerReferences(); len(refs) > 0 {
		list := make([]any, len(refs))
		for i, r := range refs {
			ref := map[string]any{"kind": r.Kind, "name": r.Name}
			if r.Controller != nil {
				ref["controller"] = *r.Controller
			}
			list[i] = ref
		}
		md["ownerReferences"] = list
	}
	out := map[string]any{"metadata": md}
	specMap := podSpecMap(spec)
	switch o := obj.(type) {
	case *corev1.Pod:
		out["spec"] = specMap
		out["status"] = map[string]any{"phase": string(o.Status.Phase)}
	case *corev1.PodTemplate:
		out["template"] = map[string]any{"spec": specMap}
	case *corev1.ReplicationController:
		out["spec"] = withReplicas(o.Spec.Replicas, specMap)
	case *appsv1.Deployment:
		out["spec"] = withReplicas(o.Spec.Replicas, specMap)
	case *appsv1.StatefulSet:
		out["spec"] = withReplicas(o.Spec.Replicas, specMap)
	case *appsv1.ReplicaSet:
		out["spec"] = withReplicas(o.Spec.Replicas, specMap)
	case *appsv1.DaemonSet:
		out["spec"] = map[string]any{"template": map[string]any{"spec": specMap}}
	case *batchv1.Job:
		out["spec"] = map[string]any{"template": map[string]any{"spec": specMap}}
		conditions := make([]any, len(o.Status.Conditions))
		for i, c := range o.Status.Conditions {
			conditions[i] = map[string]any{"type": string(c.Type), "status": string(c.Status)}
		}
		out["status"] = map[string]any{"conditions": conditions}
	case *batchv1.CronJob:
		jobSpec := map[string]any{"template": map[string]any{"spec": specMap}}
		cronSpec := map[string]any{"jobTemplate": map[string]any{"spec": jobSpec}}
		if o.Spec.Suspend != nil {
			cronSpec["suspend"] = *o.Spec.Suspend
		}
		out["spec"] = cronSpec
	default:
		return nil, false
	}
	return out, true
}

// withReplicas is a workload's spec: its replicas (when set) and template.
func withReplicas(replicas *int32, podSpec map[string]any) map[string]any {
	spec := map[string]any{"template": map[string]any{"spec": podSpec}}
	if replicas != nil {
		spec["replicas"] = int64(*replicas)
	}
	return spec
}

// podSpecMap is the map of a trimmed pod spec (see trimPodSpec).
func podSpecMap(s *corev1.PodSpec) map[string]any {
	out := map[string]any{}
	if s.HostNetwork {
		out["hostNetwork"] = true
	}
	if s.NodeName != "" {
		out["nodeName"] = s.NodeName
	}
	if s.ServiceAccountName != "" {
		out["serviceAccountName"] = s.ServiceAccountName
	}
	if s.DeprecatedServiceAccount != "" {
		out["serviceAccount"] = s.DeprecatedServiceAccount
	}
	if len(s.NodeSelector) > 0 {
		sel := make(map[string]any, len(s.NodeSelector))
		for key, v := range s.NodeSelector {
			sel[key] = v
		}
		out["nodeSelector"] = sel
	}
	if len(s.InitContainers) > 0 {
		out["initContainers"] = containerMaps(s.InitContainers)
	}
	out["containers"] = containerMaps(s.Containers)
	if len(s.EphemeralContainers) > 0 {
		cs := make([]corev1.Container, len(s.EphemeralContainers))
		for i, c := range s.EphemeralContainers {
			cs[i] = corev1.Container{Name: c.Name, Ports: c.Ports}
		}
		out["ephemeralContainers"] = containerMaps(cs)
	}
	return out
}

func containerMaps(cs []corev1.Container) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		cm := map[string]any{"name": c.Name}
		if len(c.Ports) > 0 {
			ports := make([]any, len(c.Ports))
			for j, p := range c.Ports {
				pm := map[string]any{"containerPort": int64(p.ContainerPort)}
				if p.HostPort != 0 {
					pm["hostPort"] = int64(p.HostPort)
				}
				if p.Protocol != "" {
					pm["protocol"] = string(p.Protocol)
				}
				if p.HostIP != "" {
					pm["hostIP"] = p.HostIP
				}
				if p.Name != "" {
					pm["name"] = p.Name
				}
				ports[j] = pm
			}
			cm["ports"] = ports
		}
		out[i] = cm
	}
	return out
}
