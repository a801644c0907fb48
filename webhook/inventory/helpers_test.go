package inventory

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
	"github.com/portreeve/portreeve/webhook/review"
)

// feed passes objects through the transform of their type and the event
// handler, as the informers do.
func feed(t testing.TB, idx *Index, objs ...any) {
	t.Helper()
	h := handler{index: idx}
	for _, o := range objs {
		slim, err := transform(o)
		if err != nil {
			t.Fatal(err)
		}
		h.OnAdd(slim, true)
	}
}

// transform runs the transform of the test object's kind on it, as the
// informers do (on a copy: the transform trims typed objects in place).
func transform(o any) (any, error) {
	if ns, ok := o.(*metav1.PartialObjectMetadata); ok {
		return TransformNamespace(ns)
	}
	obj := o.(runtime.Object).DeepCopyObject()
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil {
		return nil, err
	}
	k := exposure.Lookup(policies.GroupVersionKind{Group: gvks[0].Group, Version: gvks[0].Version, Kind: gvks[0].Kind})
	if k == nil {
		return nil, fmt.Errorf("%T is not a reviewed kind", o)
	}
	return Transform(k)(obj)
}

var testNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// newTestInventory is a synced inventory on a fixed clock.
func newTestInventory(now *time.Time) *Inventory {
	inv := New(Options{Now: func() time.Time { return *now }, PendingTTL: 30 * time.Second})
	inv.MarkSynced()
	return inv
}

func meta(ns, name string, owner ...string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "10"}
	if len(owner) == 2 {
		yes := true
		m.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: owner[0], Name: owner[1], Controller: &yes}}
	}
	return m
}

func podSpec(nodeName string, selector map[string]string, ports ...corev1.ContainerPort) corev1.PodSpec {
	return corev1.PodSpec{
		NodeName:     nodeName,
		NodeSelector: selector,
		Containers:   []corev1.Container{{Name: "app", Image: "registry.example/app:1", Ports: ports}},
	}
}

func hp(port int32) corev1.ContainerPort {
	return corev1.ContainerPort{ContainerPort: port, HostPort: port, Protocol: corev1.ProtocolTCP}
}

func hpIP(port int32, ip string) corev1.ContainerPort {
	p := hp(port)
	p.HostIP = ip
	return p
}

func withPhase(p *corev1.Pod, phase corev1.PodPhase) *corev1.Pod {
	p.Status.Phase = phase
	return p
}

func pod(m metav1.ObjectMeta, spec corev1.PodSpec) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: m, Spec: spec, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
}

func daemonSet(m metav1.ObjectMeta, spec corev1.PodSpec) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: m, Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
}

func deployment(m metav1.ObjectMeta, replicas int32, spec corev1.PodSpec) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: m, Spec: appsv1.DeploymentSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: spec}}}
}

func replicaSet(m metav1.ObjectMeta, replicas int32, spec corev1.PodSpec) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: m, Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: spec}}}
}

func job(m metav1.ObjectMeta, finished bool, spec corev1.PodSpec) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: m, Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
	if finished {
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	}
	return j
}

func nodePortService(m metav1.ObjectMeta, nodePorts ...int32) *corev1.Service {
	s := &corev1.Service{ObjectMeta: m, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort}}
	for i, np := range nodePorts {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: 80 + int32(i), NodePort: np, Protocol: corev1.ProtocolTCP})
	}
	return s
}

func ingress(m metav1.ObjectMeta, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	return &networkingv1.Ingress{ObjectMeta: m, Spec: networkingv1.IngressSpec{Rules: rules}}
}

func rule(host string, paths ...string) networkingv1.IngressRule {
	r := networkingv1.IngressRule{Host: host}
	if len(paths) > 0 {
		prefix := networkingv1.PathTypePrefix
		r.HTTP = &networkingv1.HTTPIngressRuleValue{}
		for _, p := range paths {
			r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{Path: p, PathType: &prefix})
		}
	}
	return r
}

var (
	podKind        = policies.GroupVersionKind{Version: "v1", Kind: "Pod"}
	deploymentKind = policies.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	serviceKind    = policies.GroupVersionKind{Version: "v1", Kind: "Service"}
	ingressKind    = policies.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}
)

// input is the rules' input for a CREATE of the object (YAML), built by
// webhook/review as the webhook builds it.
func input(t testing.TB, kind policies.GroupVersionKind, ns, obj string) *policies.Input {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(obj))
	if err != nil {
		t.Fatal(err)
	}
	in, err := review.Input(&review.Request{Operation: "CREATE", Kind: kind, Namespace: ns, Object: raw})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// updateInput is the input of an UPDATE from old to obj (YAML).
func updateInput(t testing.TB, kind policies.GroupVersionKind, ns, old, obj string) *policies.Input {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(obj))
	if err != nil {
		t.Fatal(err)
	}
	oldRaw, err := yaml.YAMLToJSON([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	in, err := review.Input(&review.Request{Operation: "UPDATE", Kind: kind, Namespace: ns, Object: raw, OldObject: oldRaw})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func config(t testing.TB, y string) *policies.Config {
	t.Helper()
	c, err := policies.ParseConfig([]byte("apiVersion: portreeve.io/v1alpha1\nkind: PolicyConfig\n"+y), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
