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
	"github.com/portreeve/portreeve/policies/exposure"
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

func TestTransformKeepsOnlyWhatTheObjectClaims(t *testing.T) {
	out, err := transform(fullPod())
	if err != nil {
		t.Fatal(err)
	}
	h, ok := out.(*Held)
	if !ok {
		t.Fatalf("transform returned %T, want *Held", out)
	}
	want := &claims{
		key:             objectKey{kind: "Pod", namespace: "team-a", name: "web-1"},
		owner:           ref{kind: "ReplicaSet", name: "web-5d4f"},
		resourceVersion: "10",
		scope:           nodeScope{nodeName: "n1", selector: map[string]string{"role": "web"}},
		hostPorts:       []hostPort{{port: 9100, protocol: "TCP"}, {port: 53, protocol: "UDP", hostIP: "10.0.0.1"}},
	}
	if !reflect.DeepEqual(h.claims, want) {
		t.Errorf("claims:\n got  %+v\n want %+v", *h.claims, *want)
	}
	if h.Name != "web-1" || h.Namespace != "team-a" || h.ResourceVersion != "10" || len(h.Labels) > 0 || len(h.Annotations) > 0 {
		t.Errorf("Held keeps more metadata than the cache keys need: %+v", h.ObjectMeta)
	}
	again, err := Transform(exposure.Lookup(policies.GroupVersionKind{Version: "v1", Kind: "Pod"}))(out)
	if err != nil || again != out {
		t.Errorf("the transform is not idempotent: %+v", again)
	}
	if out, _ := transform(pod(meta("a", "b"), podSpec("n1", nil))); !claimsOf(out).empty() {
		t.Errorf("a pod without host ports claims %+v", claimsOf(out))
	}
	done := fullPod()
	done.Status.Phase = corev1.PodSucceeded
	if out, _ := transform(done); !claimsOf(out).empty() || claimsOf(out).owner.name != "web-5d4f" {
		t.Errorf("a finished pod claims %+v, want nothing but its owner", claimsOf(out))
	}
}

func TestTransformsIgnoreOtherTypes(t *testing.T) {
	tomb := "not an object"
	for _, k := range exposure.Kinds() {
		if out, err := Transform(&k)(tomb); err != nil || out != tomb {
			t.Errorf("%s transform changed a foreign value: %v %v", k.Kind, out, err)
		}
	}
	if out, err := TransformNamespace(tomb); err != nil || out != tomb {
		t.Errorf("namespace transform changed a foreign value: %v %v", out, err)
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
