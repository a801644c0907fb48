package inventory

import (
	"encoding/json"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

func fullPod() *corev1.Pod {
	p := pod(meta("team-a", "web-1", "ReplicaSet", "web-5d4f"), podSpec("n1", map[string]string{"role": "web"}))
	p.Labels = map[string]string{"app": "web"}
	p.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	p.Spec.Volumes = []corev1.Volume{{Name: "data"}}
	p.Spec.Containers = []corev1.Container{
		{Name: "app", Image: "x", Env: []corev1.EnvVar{{Name: "SECRET", Value: "s"}}, Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
		{Name: "exporter", Image: "y", Ports: []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100}, {ContainerPort: 53, HostPort: 53, Protocol: corev1.ProtocolUDP, HostIP: "10.0.0.1"}}},
	}
	p.Status.PodIP = "10.1.2.3"
	return p
}

func TestTransformPodKeepsOnlyWhatTheRulesRead(t *testing.T) {
	out, err := TransformPod(fullPod())
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "web-1", ResourceVersion: "10", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d4f", Controller: &yes},
		}},
		Spec: corev1.PodSpec{NodeName: "n1", NodeSelector: map[string]string{"role": "web"}, Containers: []corev1.Container{{Name: "ports", Ports: []corev1.ContainerPort{
			{ContainerPort: 9100, HostPort: 9100, Protocol: "TCP"},
			{ContainerPort: 53, HostPort: 53, Protocol: "UDP", HostIP: "10.0.0.1"},
		}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("TransformPod:\n got  %+v\n want %+v", out, want)
	}
	again, err := TransformPod(out)
	if err != nil || !reflect.DeepEqual(again, out) {
		t.Errorf("TransformPod is not idempotent: %+v", again)
	}
	if out, _ := TransformPod(pod(meta("a", "b"), podSpec("n1", nil))); !reflect.DeepEqual(out.(*corev1.Pod).Spec, corev1.PodSpec{}) {
		t.Errorf("a pod without host ports keeps its spec: %+v", out)
	}
}

func TestTransformsIgnoreOtherTypes(t *testing.T) {
	tomb := "not an object"
	for name, f := range map[string]func(any) (any, error){
		"pod": TransformPod, "workload": TransformWorkload, "service": TransformService,
		"ingress": TransformIngress, "namespace": TransformNamespace,
	} {
		if out, err := f(tomb); err != nil || out != tomb {
			t.Errorf("%s transform changed a foreign value: %v %v", name, out, err)
		}
	}
}

// TestRequestClaimsMatchInformerClaims: an object seen through the webhook
// (JSON, as webhook/review decodes it) claims what the same object seen
// through the informers (typed, transformed) claims.
func TestRequestClaimsMatchInformerClaims(t *testing.T) {
	hostNetworkDS := daemonSet(meta("kube-system", "dns"), podSpec("", map[string]string{"role": "dns"}, corev1.ContainerPort{ContainerPort: 53, Protocol: corev1.ProtocolUDP}))
	hostNetworkDS.Spec.Template.Spec.HostNetwork = true
	exact := networkingv1.PathTypeExact
	ing := ingress(meta("team-a", "app"), rule("app.example.com", "/", "/api"), rule("bare.example.com"), rule(""))
	ing.Spec.Rules[0].HTTP.Paths = append(ing.Spec.Rules[0].HTTP.Paths, networkingv1.HTTPIngressPath{Path: "/exact", PathType: &exact})
	lb := nodePortService(meta("team-a", "lb"), 30100, 0)
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	lb.Spec.HealthCheckNodePort = 30101
	tests := []struct {
		name string
		gvk  schema.GroupVersionKind
		obj  any
	}{
		{"pod", corev1.SchemeGroupVersion.WithKind("Pod"), fullPod()},
		{"hostNetwork DaemonSet template", schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}, hostNetworkDS},
		{"deployment", schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, deployment(meta("team-a", "web"), 3, podSpec("", nil, hp(8080)))},
		{"job", schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}, job(meta("team-a", "j", "CronJob", "c"), false, podSpec("", nil, hp(8080)))},
		{"service", corev1.SchemeGroupVersion.WithKind("Service"), lb},
		{"ingress", schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}, ing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := json.Marshal(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			m := metaOf(tc.obj)
			in, err := review.Input(&review.Request{
				Operation: "CREATE",
				Kind:      policies.GroupVersionKind{Group: tc.gvk.Group, Version: tc.gvk.Version, Kind: tc.gvk.Kind},
				Namespace: m.GetNamespace(), Name: m.GetName(), Object: raw,
			})
			if err != nil {
				t.Fatal(err)
			}
			fromRequest := readRequest(in).claims
			slim, err := transform(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			fromInformer := claimsOf(slim)
			clearFields(&fromRequest)
			fromRequest.resourceVersion = fromInformer.resourceVersion
			if !reflect.DeepEqual(&fromRequest, fromInformer) {
				t.Errorf("claims differ:\n request  %+v\n informer %+v", fromRequest, *fromInformer)
			}
			if fromInformer.empty() {
				t.Error("test object claims nothing")
			}
		})
	}
}

func metaOf(obj any) metav1.Object {
	m, _ := obj.(metav1.Object)
	return m
}

func clearFields(c *claims) {
	for i := range c.hostPorts {
		c.hostPorts[i].field = ""
	}
	for i := range c.nodePorts {
		c.nodePorts[i].field = ""
	}
	for i := range c.hosts {
		c.hosts[i].field = ""
	}
}
