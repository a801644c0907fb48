package inventory

import (
	"strings"
	"unique"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The transforms below run on every object an informer receives, before it
// enters the cache: they keep only what claimsOf reads, so the cache holds a
// few hundred bytes per object instead of the whole object. They are
// idempotent (client-go may run them on an object twice) and copy what they
// keep, so the full object can be collected.

// TransformPod keeps a Pod's name, controller owner, phase, and, when it
// binds host ports, its node name, node selector and those ports.
func TransformPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: slimMeta(&pod.ObjectMeta)}
	out.Status.Phase = corev1.PodPhase(intern(string(pod.Status.Phase)))
	if terminal(pod.Status.Phase) {
		return out, nil
	}
	out.Spec = slimPodSpec(&pod.Spec)
	return out, nil
}

func terminal(phase corev1.PodPhase) bool {
	return phase == corev1.PodSucceeded || phase == corev1.PodFailed
}

// TransformWorkload keeps a workload's name, controller owner and, while it
// runs pods (replicas above zero, a Job not finished, a CronJob not
// suspended), the host ports of its pod template.
func TransformWorkload(obj any) (any, error) {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		out := &appsv1.Deployment{ObjectMeta: slimMeta(&w.ObjectMeta)}
		if replicas(w.Spec.Replicas) {
			out.Spec.Template.Spec = slimPodSpec(&w.Spec.Template.Spec)
		}
		return out, nil
	case *appsv1.StatefulSet:
		out := &appsv1.StatefulSet{ObjectMeta: slimMeta(&w.ObjectMeta)}
		if replicas(w.Spec.Replicas) {
			out.Spec.Template.Spec = slimPodSpec(&w.Spec.Template.Spec)
		}
		return out, nil
	case *appsv1.ReplicaSet:
		out := &appsv1.ReplicaSet{ObjectMeta: slimMeta(&w.ObjectMeta)}
		if replicas(w.Spec.Replicas) {
			out.Spec.Template.Spec = slimPodSpec(&w.Spec.Template.Spec)
		}
		return out, nil
	case *appsv1.DaemonSet:
		out := &appsv1.DaemonSet{ObjectMeta: slimMeta(&w.ObjectMeta)}
		out.Spec.Template.Spec = slimPodSpec(&w.Spec.Template.Spec)
		return out, nil
	case *corev1.ReplicationController:
		out := &corev1.ReplicationController{ObjectMeta: slimMeta(&w.ObjectMeta)}
		if replicas(w.Spec.Replicas) && w.Spec.Template != nil {
			out.Spec.Template = &corev1.PodTemplateSpec{Spec: slimPodSpec(&w.Spec.Template.Spec)}
		}
		return out, nil
	case *batchv1.Job:
		out := &batchv1.Job{ObjectMeta: slimMeta(&w.ObjectMeta)}
		if !jobFinished(w) {
			out.Spec.Template.Spec = slimPodSpec(&w.Spec.Template.Spec)
		}
		return out, nil
	case *batchv1.CronJob:
		out := &batchv1.CronJob{ObjectMeta: slimMeta(&w.ObjectMeta)}
		if w.Spec.Suspend == nil || !*w.Spec.Suspend {
			out.Spec.JobTemplate.Spec.Template.Spec = slimPodSpec(&w.Spec.JobTemplate.Spec.Template.Spec)
		}
		return out, nil
	}
	return obj, nil
}

func replicas(n *int32) bool { return n == nil || *n > 0 }

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// TransformService keeps a NodePort or LoadBalancer Service's node ports.
func TransformService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	out := &corev1.Service{ObjectMeta: slimMeta(&svc.ObjectMeta)}
	if svc.Spec.Type != corev1.ServiceTypeNodePort && svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return out, nil
	}
	out.Spec.Type = svc.Spec.Type
	out.Spec.HealthCheckNodePort = svc.Spec.HealthCheckNodePort
	for _, p := range svc.Spec.Ports {
		if p.NodePort > 0 {
			out.Spec.Ports = append(out.Spec.Ports, corev1.ServicePort{
				Protocol: corev1.Protocol(intern(string(p.Protocol))),
				NodePort: p.NodePort,
			})
		}
	}
	return out, nil
}

// TransformIngress keeps an Ingress's hosts and their paths.
func TransformIngress(obj any) (any, error) {
	ing, ok := obj.(*networkingv1.Ingress)
	if !ok {
		return obj, nil
	}
	out := &networkingv1.Ingress{ObjectMeta: slimMeta(&ing.ObjectMeta)}
	for _, r := range ing.Spec.Rules {
		if r.Host == "" {
			continue
		}
		rule := networkingv1.IngressRule{Host: strings.Clone(r.Host)}
		if r.HTTP != nil {
			paths := make([]networkingv1.HTTPIngressPath, len(r.HTTP.Paths))
			for i, p := range r.HTTP.Paths {
				paths[i] = networkingv1.HTTPIngressPath{Path: strings.Clone(p.Path), PathType: p.PathType}
			}
			rule.HTTP = &networkingv1.HTTPIngressRuleValue{Paths: paths}
		}
		out.Spec.Rules = append(out.Spec.Rules, rule)
	}
	return out, nil
}

// TransformNamespace keeps a namespace's name and labels (namespace
// selectors and the rules' namespaceLabels need them).
func TransformNamespace(obj any) (any, error) {
	ns, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: ns.TypeMeta}
	out.Name = ns.Name
	out.ResourceVersion = ns.ResourceVersion
	out.Labels = ns.Labels
	return out, nil
}

// slimMeta keeps name, namespace, resource version and the controller owner.
func slimMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name:            strings.Clone(m.Name),
		Namespace:       intern(m.Namespace),
		ResourceVersion: strings.Clone(m.ResourceVersion),
	}
	if c := metav1.GetControllerOfNoCopy(m); c != nil {
		out.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: intern(c.APIVersion),
			Kind:       intern(c.Kind),
			Name:       strings.Clone(c.Name),
			Controller: c.Controller,
		}}
	}
	return out
}

// slimPodSpec keeps the host ports of every container (hostPort defaulted to
// containerPort on hostNetwork pods, as the apiserver does for Pods and
// webhook/review does for templates), with node name and selector; an empty
// spec when the pod binds no host port.
func slimPodSpec(spec *corev1.PodSpec) corev1.PodSpec {
	var ports []corev1.ContainerPort
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				hp := p.HostPort
				if hp == 0 && spec.HostNetwork {
					hp = p.ContainerPort
				}
				if hp <= 0 {
					continue
				}
				proto := p.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				ports = append(ports, corev1.ContainerPort{
					HostPort: hp, ContainerPort: p.ContainerPort,
					Protocol: corev1.Protocol(intern(string(proto))), HostIP: intern(p.HostIP),
				})
			}
		}
	}
	if len(ports) == 0 {
		return corev1.PodSpec{}
	}
	out := corev1.PodSpec{
		NodeName:    intern(spec.NodeName),
		HostNetwork: spec.HostNetwork,
		Containers:  []corev1.Container{{Name: "ports", Ports: ports}},
	}
	if len(spec.NodeSelector) > 0 {
		out.NodeSelector = make(map[string]string, len(spec.NodeSelector))
		for k, v := range spec.NodeSelector {
			out.NodeSelector[intern(k)] = intern(v)
		}
	}
	return out
}

// intern returns the canonical copy of a string that many objects repeat
// (namespaces, kinds, node names, protocols, selector labels).
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// claimsOf returns what a (transformed) object holds, and for ReplicaSets
// and Jobs the owner the index remembers to name the top owner of their Pods.
// It returns nil for objects of other types.
func claimsOf(obj any) *claims {
	switch o := obj.(type) {
	case *corev1.Pod:
		c := newClaims("Pod", &o.ObjectMeta)
		if !terminal(o.Status.Phase) {
			podSpecClaims(c, &o.Spec)
		}
		return c
	case *appsv1.Deployment:
		return podSpecClaims(newClaims("Deployment", &o.ObjectMeta), &o.Spec.Template.Spec)
	case *appsv1.StatefulSet:
		return podSpecClaims(newClaims("StatefulSet", &o.ObjectMeta), &o.Spec.Template.Spec)
	case *appsv1.ReplicaSet:
		return podSpecClaims(newClaims("ReplicaSet", &o.ObjectMeta), &o.Spec.Template.Spec)
	case *appsv1.DaemonSet:
		return podSpecClaims(newClaims("DaemonSet", &o.ObjectMeta), &o.Spec.Template.Spec)
	case *corev1.ReplicationController:
		c := newClaims("ReplicationController", &o.ObjectMeta)
		if o.Spec.Template != nil {
			podSpecClaims(c, &o.Spec.Template.Spec)
		}
		return c
	case *batchv1.Job:
		return podSpecClaims(newClaims("Job", &o.ObjectMeta), &o.Spec.Template.Spec)
	case *batchv1.CronJob:
		return podSpecClaims(newClaims("CronJob", &o.ObjectMeta), &o.Spec.JobTemplate.Spec.Template.Spec)
	case *corev1.Service:
		c := newClaims("Service", &o.ObjectMeta)
		if o.Spec.Type != corev1.ServiceTypeNodePort && o.Spec.Type != corev1.ServiceTypeLoadBalancer {
			return c
		}
		for _, p := range o.Spec.Ports {
			if p.NodePort > 0 {
				c.nodePorts = append(c.nodePorts, nodePort{port: p.NodePort, protocol: protocolOr(string(p.Protocol))})
			}
		}
		if o.Spec.HealthCheckNodePort > 0 {
			c.nodePorts = append(c.nodePorts, nodePort{port: o.Spec.HealthCheckNodePort, protocol: "TCP"})
		}
		return c
	case *networkingv1.Ingress:
		c := newClaims("Ingress", &o.ObjectMeta)
		for _, r := range o.Spec.Rules {
			if r.Host == "" {
				continue
			}
			if r.HTTP == nil || len(r.HTTP.Paths) == 0 {
				c.hosts = append(c.hosts, hostPath{host: r.Host, path: "/", prefix: true})
				continue
			}
			for _, p := range r.HTTP.Paths {
				c.hosts = append(c.hosts, newHostPath(r.Host, p.Path, p.PathType != nil && *p.PathType == networkingv1.PathTypeExact))
			}
		}
		return c
	}
	return nil
}

func newHostPath(host, path string, exact bool) hostPath {
	if path == "" {
		path = "/"
	}
	return hostPath{host: host, path: path, prefix: !exact}
}

func newClaims(kind string, m *metav1.ObjectMeta) *claims {
	c := &claims{
		key:             objectKey{kind: kind, namespace: m.Namespace, name: m.Name},
		resourceVersion: m.ResourceVersion,
	}
	if o := metav1.GetControllerOfNoCopy(m); o != nil {
		c.owner = ownerRef(o.Kind, o.Name)
	}
	return c
}

// ownerRef is the owner a claim is grouped and named by. A mirror pod's
// owner is its Node, which would merge unrelated static pods: they stand alone.
func ownerRef(kind, name string) ref {
	if kind == "" || kind == "Node" {
		return ref{}
	}
	return ref{kind: kind, name: name}
}

func podSpecClaims(c *claims, spec *corev1.PodSpec) *claims {
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, ct := range list {
			for _, p := range ct.Ports {
				hp := p.HostPort
				if hp == 0 && spec.HostNetwork {
					hp = p.ContainerPort
				}
				if hp > 0 {
					c.hostPorts = append(c.hostPorts, hostPort{port: hp, protocol: protocolOr(string(p.Protocol)), hostIP: p.HostIP})
				}
			}
		}
	}
	if len(c.hostPorts) > 0 {
		c.scope = nodeScope{nodeName: spec.NodeName, selector: spec.NodeSelector}
	}
	return c
}

func protocolOr(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}
