package live

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/portreeve/portreeve/policies/exposure"
	"github.com/portreeve/portreeve/policies/suggest"
)

// fakeCluster is a dynamic client serving objects, with a list kind
// registered for every reviewed kind and for Namespaces.
func fakeCluster(t *testing.T, objects ...runtime.Object) *dynamicfake.FakeDynamicClient {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	listKinds := map[schema.GroupVersionResource]string{namespaces: "NamespaceList"}
	for _, k := range exposure.Kinds() {
		listKinds[gvr(k)] = k.Kind + "List"
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, listKinds, objects...)
}

func meta(ns, name string, owner ...metav1.OwnerReference) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: owner}
}

func controller(apiVersion, kind, name string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: "u", Controller: ptr.To(true)}
}

func podSpec(sa string, hostNetwork bool, ports ...corev1.ContainerPort) corev1.PodSpec {
	return corev1.PodSpec{
		ServiceAccountName: sa, HostNetwork: hostNetwork,
		Containers: []corev1.Container{{Name: "c", Image: "x", Ports: ports}},
	}
}

func template(spec corev1.PodSpec) corev1.PodTemplateSpec { return corev1.PodTemplateSpec{Spec: spec} }

func port(container, host int32) corev1.ContainerPort {
	return corev1.ContainerPort{ContainerPort: container, HostPort: host, Protocol: corev1.ProtocolTCP}
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func ingress(ns, name, host string, tls bool) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: meta(ns, name), Spec: networkingv1.IngressSpec{
		IngressClassName: ptr.To("nginx"),
		Rules:            []networkingv1.IngressRule{{Host: host}},
	}}
	if tls {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: name + "-tls"}}
	}
	return ing
}

// seededCluster is the shape of the cluster docs/suggest.md shows, as the
// apiserver stores it: hostPorts of hostNetwork Pods defaulted, node ports
// allocated, controllers' ReplicaSets and Pods present.
func seededCluster() []runtime.Object {
	calico := podSpec("", true, port(179, 0), port(9091, 0))
	calicoPod := podSpec("", true, port(179, 179), port(9091, 9091))
	exporter := podSpec("node-exporter", true, port(9100, 9100))
	nginx := podSpec("ingress-nginx", false, port(80, 80), port(443, 443))
	return []runtime.Object{
		namespace("kube-system", nil), namespace("portreeve-system", nil), namespace("calico-system", nil),
		namespace("monitoring", nil), namespace("ingress-nginx", nil), namespace("team-a", nil), namespace("team-b", nil),
		namespace("sandbox", map[string]string{"portreeve.io/ignore": ""}),
		&appsv1.DaemonSet{ObjectMeta: meta("kube-system", "kube-proxy"), Spec: appsv1.DaemonSetSpec{Template: template(podSpec("kube-proxy", true, port(10256, 10256)))}},
		&appsv1.Deployment{ObjectMeta: meta("portreeve-system", "portreeve"), Spec: appsv1.DeploymentSpec{Template: template(podSpec("portreeve", false))}},
		&corev1.Pod{ObjectMeta: meta("sandbox", "debug"), Spec: podSpec("", true)},
		&appsv1.DaemonSet{ObjectMeta: meta("calico-system", "calico-node"), Spec: appsv1.DaemonSetSpec{Template: template(calico)}},
		&corev1.Pod{ObjectMeta: meta("calico-system", "calico-node-x7k2p", controller("apps/v1", "DaemonSet", "calico-node")), Spec: calicoPod},
		&appsv1.DaemonSet{ObjectMeta: meta("monitoring", "node-exporter"), Spec: appsv1.DaemonSetSpec{Template: template(exporter)}},
		&corev1.Pod{ObjectMeta: meta("monitoring", "node-exporter-4fj9q", controller("apps/v1", "DaemonSet", "node-exporter")), Spec: exporter},
		&appsv1.Deployment{ObjectMeta: meta("ingress-nginx", "ingress-nginx-controller"), Spec: appsv1.DeploymentSpec{Template: template(nginx)}},
		&appsv1.ReplicaSet{
			ObjectMeta: meta("ingress-nginx", "ingress-nginx-controller-5c9f", controller("apps/v1", "Deployment", "ingress-nginx-controller")),
			Spec:       appsv1.ReplicaSetSpec{Template: template(nginx)},
		},
		&corev1.Pod{ObjectMeta: meta("ingress-nginx", "ingress-nginx-controller-5c9f-abcde", controller("apps/v1", "ReplicaSet", "ingress-nginx-controller-5c9f")), Spec: nginx},
		&corev1.Service{ObjectMeta: meta("default", "kubernetes"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 443}}}},
		&corev1.Service{ObjectMeta: meta("team-a", "web"), Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}},
		}},
		&corev1.Service{ObjectMeta: meta("team-b", "shop"), Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(true),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, NodePort: 31380, Protocol: corev1.ProtocolTCP},
				{Name: "https", Port: 443, NodePort: 31443, Protocol: corev1.ProtocolTCP},
			},
		}},
		ingress("team-a", "web", "web.team-a.example.com", false),
		ingress("team-b", "shop", "shop.example.com", true),
	}
}

// seededSuggestion is the configuration docs/suggest.md shows for the seeded cluster.
const seededSuggestion = `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: system
    namespaces: [kube-system]
    hostNetwork: true
    hostPorts: ["1-65535"]
    nodePorts: ["30000-32767"]
    loadBalancer: true
    externalIPs: ["0.0.0.0/0", "::/0"]
    reason: cluster components run here
  - name: ns-calico-system
    namespaces: [calico-system]
    hostNetwork: true
    hostPorts: ["179/TCP", "9091/TCP"]
    reason: in use by DaemonSet/calico-node (portreeve suggest)
  - name: sa-ingress-nginx-ingress-nginx
    serviceAccounts: [ingress-nginx/ingress-nginx]
    hostPorts: ["80/TCP", "443/TCP"]
    reason: in use by Deployment/ingress-nginx-controller (portreeve suggest)
  - name: sa-monitoring-node-exporter
    serviceAccounts: [monitoring/node-exporter]
    hostNetwork: true
    hostPorts: ["9100/TCP"]
    reason: in use by DaemonSet/node-exporter (portreeve suggest)
  - name: ns-team-a
    namespaces: [team-a]
    nodePorts: ["30080"]
    ingressDomains: [web.team-a.example.com]
    ingressClasses: [nginx]
    reason: in use by Ingress/web, Service/web (portreeve suggest)
  - name: ns-team-b
    namespaces: [team-b]
    nodePorts: ["31380", "31443"]
    loadBalancer: true
    ingressDomains: [shop.example.com]
    ingressClasses: [nginx]
    reason: in use by Ingress/shop, Service/shop (portreeve suggest)
`

func TestReadSeededCluster(t *testing.T) {
	client := fakeCluster(t, seededCluster()...)
	objects, ignored, err := Read(t.Context(), client, Options{IgnoreLabel: "portreeve.io/ignore"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ignored, []string{"sandbox"}) {
		t.Errorf("ignored namespaces %v, want [sandbox]", ignored)
	}
	kinds := map[string]int{}
	for _, o := range objects {
		if o.Source != Source {
			t.Errorf("source %q", o.Source)
		}
		if strings.Contains(string(o.JSON), "managedFields") {
			t.Errorf("managedFields kept: %s", o.JSON)
		}
		var head struct{ APIVersion, Kind string }
		if err := json.Unmarshal(o.JSON, &head); err != nil || head.APIVersion == "" || head.Kind == "" {
			t.Errorf("no apiVersion or kind: %s", o.JSON)
		}
		kinds[head.Kind]++
	}
	want := map[string]int{"DaemonSet": 3, "Deployment": 2, "ReplicaSet": 1, "Pod": 4, "Service": 3, "Ingress": 2}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d objects of kind %s, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}

	skip := map[string]string{"kube-system": "", "portreeve-system": "Portreeve's own namespace"}
	for _, ns := range ignored {
		skip[ns] = "labelled portreeve.io/ignore"
	}
	res, err := suggest.Suggest(t.Context(), objects, suggest.Options{SkipNamespaces: skip})
	if err != nil {
		t.Fatal(err)
	}
	out, err := suggest.Marshal(res.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != seededSuggestion {
		t.Errorf("suggestion:\n%s\nwant:\n%s", out, seededSuggestion)
	}
	if res.Unresolved() {
		var b strings.Builder
		_ = res.WriteReport(&b)
		t.Errorf("unresolved:\n%s", b.String())
	}
	if res.Reviewed != 8 {
		t.Errorf("reviewed %d objects, want 8 (3 workloads, 3 Services, 2 Ingresses)", res.Reviewed)
	}
}

func TestReadErrors(t *testing.T) {
	client := fakeCluster(t)
	client.PrependReactor("list", "cronjobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "batch", Resource: "cronjobs"}, "")
	})
	if _, _, err := Read(t.Context(), client, Options{}); err != nil {
		t.Errorf("a kind the cluster does not serve is an error: %v", err)
	}
	client.PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "", errors.New("no"))
	})
	_, _, err := Read(t.Context(), client, Options{})
	if err == nil || !strings.Contains(err.Error(), "list services") {
		t.Errorf("error %v, want one naming services: a partial read would suggest too little", err)
	}
}

// pagingPods answers pod lists, one pod a page, and records the calls (the
// fake dynamic client drops limit and continue).
type pagingPods struct {
	dynamic.NamespaceableResourceInterface
	t     *testing.T
	calls []string
}

func (pp *pagingPods) List(_ context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	pp.calls = append(pp.calls, opts.Continue)
	if opts.Limit != 2 {
		pp.t.Errorf("limit %d, want 2", opts.Limit)
	}
	if len(pp.calls) > 10 {
		return nil, errors.New("too many pages")
	}
	p := &corev1.Pod{ObjectMeta: meta("a", "p-"+opts.Continue)}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		return nil, err
	}
	list := &unstructured.UnstructuredList{Items: []unstructured.Unstructured{{Object: obj}}}
	if opts.Continue == "" {
		list.SetContinue("next")
	}
	return list, nil
}

// pagingClient serves pods from pagingPods, the rest from the fake.
type pagingClient struct {
	dynamic.Interface
	pods *pagingPods
}

func (c pagingClient) Resource(r schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	if r.Resource == "pods" {
		return c.pods
	}
	return c.Interface.Resource(r)
}

func TestReadPages(t *testing.T) {
	pods := &pagingPods{t: t}
	objects, _, err := Read(t.Context(), pagingClient{Interface: fakeCluster(t), pods: pods}, Options{PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pods.calls, []string{"", "next"}) || len(objects) != 2 {
		t.Errorf("calls %q, %d objects", pods.calls, len(objects))
	}
	for _, o := range objects {
		var head struct{ APIVersion, Kind string }
		if err := json.Unmarshal(o.JSON, &head); err != nil || head.APIVersion != "v1" || head.Kind != "Pod" {
			t.Errorf("apiVersion and kind not set from the table: %s", o.JSON)
		}
		if strings.Contains(string(o.JSON), "managedFields") {
			t.Errorf("managedFields kept: %s", o.JSON)
		}
	}
}

func unstructuredOf(t *testing.T, apiVersion, kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "spec": spec}}
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// TestReadGatewayAPI: where the Gateway API CRDs are served, their kinds
// are read with the rest (exposure.Kinds), and suggest grants them; where
// they are not (the list is NotFound), they are skipped.
func TestReadGatewayAPI(t *testing.T) {
	gv := exposure.GatewayGroup + "/v1"
	client := fakeCluster(t)
	// Created through the tracker with their resource: the fake client
	// would guess "gatewaies" for Gateway.
	for _, o := range []*unstructured.Unstructured{
		unstructuredOf(t, gv, "Gateway", "infra", "shared", map[string]any{
			"gatewayClassName": "cloud",
			"addresses":        []any{map[string]any{"type": "IPAddress", "value": "203.0.113.10"}},
			"listeners":        []any{map[string]any{"name": "web", "port": int64(443), "protocol": "HTTPS", "hostname": "*.shop.example.com"}},
		}),
		unstructuredOf(t, gv, "HTTPRoute", "team-a", "shop", map[string]any{
			"parentRefs": []any{map[string]any{"name": "shared", "namespace": "infra"}},
		}),
	} {
		k := exposure.Lookup(exposure.GroupVersionKind{Group: exposure.GatewayGroup, Version: "v1", Kind: o.GetKind()})
		if err := client.Tracker().Create(gvr(*k), o, o.GetNamespace()); err != nil {
			t.Fatal(err)
		}
	}
	objects, _, err := Read(t.Context(), client, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := suggest.Suggest(t.Context(), objects, suggest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := suggest.Marshal(res.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `    reason: cluster components run here
  - name: ns-infra
    namespaces: [infra]
    loadBalancer: true
    externalIPs: ["203.0.113.10/32"]
    ingressDomains: ["*.shop.example.com"]
    reason: in use by Gateway/shared (portreeve suggest)
  - name: ns-team-a
    namespaces: [team-a]
    ingressDomains: ["*.shop.example.com"]
    reason: in use by HTTPRoute/shop (portreeve suggest)
`
	if !strings.HasSuffix(string(out), want) {
		t.Errorf("suggestion:\n%s\nwant:\n%s", out, want)
	}
	if res.Unresolved() {
		var b strings.Builder
		_ = res.WriteReport(&b)
		t.Errorf("unresolved:\n%s", b.String())
	}

	// A cluster without the CRDs: the Gateway API kinds are skipped.
	for _, k := range exposure.Kinds() {
		if k.CRD {
			client.PrependReactor("list", k.Resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: k.Group, Resource: k.Resource}, "")
			})
		}
	}
	objects, _, err = Read(t.Context(), client, Options{})
	if err != nil || len(objects) != 0 {
		t.Errorf("without the CRDs: %d objects, error %v; want none and no error", len(objects), err)
	}
}
