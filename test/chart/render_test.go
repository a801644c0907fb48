package chart

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podSpecCEL is the matchCondition the chart must render for a pod spec at the given path.
func podSpecCEL(s string) string {
	return fmt.Sprintf("%[1]s.?hostNetwork.orValue(false) || [%[1]s.containers, %[1]s.?initContainers.orValue([]), "+
		"%[1]s.?ephemeralContainers.orValue([])].exists(l, l.exists(c, c.?ports.orValue([]).exists(p, p.?hostPort.orValue(0) != 0)))", s)
}

const serviceCEL = "object.spec.?type.orValue('ClusterIP') != 'ClusterIP' || size(object.spec.?externalIPs.orValue([])) > 0"

type ruleSpec struct {
	group     string
	resources []string
}

type family struct {
	name   string
	rules  []ruleSpec
	cel    string // "" means no matchCondition
	mutate bool   // also in the mutating configuration
}

var families = []family{
	{"pods", []ruleSpec{{"", []string{"pods", "pods/ephemeralcontainers"}}}, podSpecCEL("object.spec"), true},
	{"workloads", []ruleSpec{
		{"apps", []string{"deployments", "daemonsets", "statefulsets", "replicasets"}},
		{"", []string{"replicationcontrollers"}},
		{"batch", []string{"jobs"}},
	}, podSpecCEL("object.spec.template.spec"), true},
	{"cronjobs", []ruleSpec{{"batch", []string{"cronjobs"}}}, podSpecCEL("object.spec.jobTemplate.spec.template.spec"), true},
	{"podtemplates", []ruleSpec{{"", []string{"podtemplates"}}}, podSpecCEL("object.template.spec"), true},
	{"services", []ruleSpec{{"", []string{"services"}}}, serviceCEL, true},
	{"ingresses", []ruleSpec{{"networking.k8s.io", []string{"ingresses"}}}, "", false},
	{"gateways", []ruleSpec{{"gateway.networking.k8s.io", []string{"gateways", "listenersets", "httproutes", "grpcroutes", "tlsroutes"}}}, "", false},
}

func expectedRules(f family) []admissionregistrationv1.RuleWithOperations {
	scope := admissionregistrationv1.NamespacedScope
	var out []admissionregistrationv1.RuleWithOperations
	for _, r := range f.rules {
		out = append(out, admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{
				APIGroups:   []string{r.group},
				APIVersions: []string{"v1"},
				Resources:   r.resources,
				Scope:       &scope,
			},
		})
	}
	return out
}

// hook is the part common to validating and mutating webhook entries.
type hook struct {
	Name              string
	ClientConfig      admissionregistrationv1.WebhookClientConfig
	Rules             []admissionregistrationv1.RuleWithOperations
	FailurePolicy     *admissionregistrationv1.FailurePolicyType
	MatchPolicy       *admissionregistrationv1.MatchPolicyType
	NamespaceSelector *metav1.LabelSelector
	SideEffects       *admissionregistrationv1.SideEffectClass
	TimeoutSeconds    *int32
	ReviewVersions    []string
	MatchConditions   []admissionregistrationv1.MatchCondition
	Reinvocation      *admissionregistrationv1.ReinvocationPolicyType
}

func hooks(r *rendered) (validating, mutating []hook, vAnn, mAnn map[string]string) {
	for _, o := range r.Objects {
		switch w := o.Typed.(type) {
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			vAnn = w.Annotations
			for _, h := range w.Webhooks {
				if h.Name == optOutWebhook {
					continue // not an exposure family: TestOptOutWebhook checks it
				}
				validating = append(validating, hook{h.Name, h.ClientConfig, h.Rules, h.FailurePolicy, h.MatchPolicy,
					h.NamespaceSelector, h.SideEffects, h.TimeoutSeconds, h.AdmissionReviewVersions, h.MatchConditions, nil})
			}
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			mAnn = w.Annotations
			for _, h := range w.Webhooks {
				mutating = append(mutating, hook{h.Name, h.ClientConfig, h.Rules, h.FailurePolicy, h.MatchPolicy,
					h.NamespaceSelector, h.SideEffects, h.TimeoutSeconds, h.AdmissionReviewVersions, h.MatchConditions, h.ReinvocationPolicy})
			}
		}
	}
	return
}

// webhookExpect describes what every entry of one configuration must look like.
type webhookExpect struct {
	fullname        string
	url             string // base URL; "" means the Service
	caBundle        string
	failurePolicy   admissionregistrationv1.FailurePolicyType
	timeout         int32
	matchConditions bool
	// mutateAll: the mutating webhook is registered for every family it can
	// act on (webhook.mutating.scope all, or rules that rewrite pods); by
	// default only Services are sent to it (node-port-conflicts).
	mutateAll bool
}

func checkHooks(t *testing.T, kind string, got []hook, mutating bool, e webhookExpect) {
	t.Helper()
	var want []family
	for _, f := range families {
		if !mutating || f.mutate && (e.mutateAll || f.name == "services") {
			want = append(want, f)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d webhooks, want %d", kind, len(got), len(want))
	}
	path, suffix := "/validate", "portreeve.io"
	if mutating {
		path, suffix = "/mutate", "mutate.portreeve.io"
	}
	for i, f := range want {
		h := got[i]
		if wantName := f.name + "." + suffix; h.Name != wantName {
			t.Errorf("%s webhook %d: name %q, want %q", kind, i, h.Name, wantName)
		}
		if !reflect.DeepEqual(h.ReviewVersions, []string{"v1"}) {
			t.Errorf("%s: admissionReviewVersions %v", h.Name, h.ReviewVersions)
		}
		if h.SideEffects == nil || *h.SideEffects != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: sideEffects %v", h.Name, h.SideEffects)
		}
		if h.FailurePolicy == nil || *h.FailurePolicy != e.failurePolicy {
			t.Errorf("%s: failurePolicy %v, want %s", h.Name, h.FailurePolicy, e.failurePolicy)
		}
		if h.TimeoutSeconds == nil || *h.TimeoutSeconds != e.timeout {
			t.Errorf("%s: timeoutSeconds %v, want %d", h.Name, h.TimeoutSeconds, e.timeout)
		}
		if h.MatchPolicy == nil || *h.MatchPolicy != admissionregistrationv1.Equivalent {
			t.Errorf("%s: matchPolicy %v", h.Name, h.MatchPolicy)
		}
		if mutating {
			if h.Reinvocation == nil || *h.Reinvocation != admissionregistrationv1.IfNeededReinvocationPolicy {
				t.Errorf("%s: reinvocationPolicy %v", h.Name, h.Reinvocation)
			}
		}
		if !reflect.DeepEqual(h.Rules, expectedRules(f)) {
			t.Errorf("%s: rules\n got %+v\nwant %+v", h.Name, h.Rules, expectedRules(f))
		}
		var wantMC []admissionregistrationv1.MatchCondition
		if e.matchConditions && f.cel != "" {
			wantMC = []admissionregistrationv1.MatchCondition{{Name: "has-exposure", Expression: f.cel}}
		}
		if !reflect.DeepEqual(h.MatchConditions, wantMC) {
			t.Errorf("%s: matchConditions\n got %+v\nwant %+v", h.Name, h.MatchConditions, wantMC)
		}
		cc := h.ClientConfig
		if e.url != "" {
			if cc.Service != nil || cc.URL == nil || *cc.URL != e.url+path {
				t.Errorf("%s: clientConfig %+v, want url %s%s and no service", h.Name, cc, e.url, path)
			}
		} else {
			port := int32(443)
			want := &admissionregistrationv1.ServiceReference{Namespace: releaseNamespace, Name: e.fullname, Path: &path, Port: &port}
			if cc.URL != nil || !reflect.DeepEqual(cc.Service, want) {
				t.Errorf("%s: clientConfig %+v, want service %+v", h.Name, cc, want)
			}
		}
		if string(cc.CABundle) != e.caBundle {
			t.Errorf("%s: caBundle %q, want %q", h.Name, cc.CABundle, e.caBundle)
		}
	}
}

// checkNamespaceSelector: every webhook of both kinds excludes the release namespace, kube-system
// and the extra namespaces, and skips namespaces with the opt-out label (when one is expected).
func checkNamespaceSelector(t *testing.T, r *rendered, extra []string, ignoreLabel string) {
	t.Helper()
	v, m, _, _ := hooks(r)
	for _, h := range append(v, m...) {
		sel := h.NamespaceSelector
		if sel == nil || len(sel.MatchLabels) != 0 {
			t.Errorf("%s: namespaceSelector %+v", h.Name, sel)
			continue
		}
		var excluded []string
		var ignore []string
		for _, e := range sel.MatchExpressions {
			switch {
			case e.Key == "kubernetes.io/metadata.name" && e.Operator == "NotIn":
				excluded = append(excluded, e.Values...)
			case e.Operator == "DoesNotExist":
				ignore = append(ignore, e.Key)
			default:
				t.Errorf("%s: unexpected namespaceSelector expression %+v", h.Name, e)
			}
		}
		want := append([]string{releaseNamespace, "kube-system"}, extra...)
		if !reflect.DeepEqual(excluded, want) {
			t.Errorf("%s: excluded namespaces %v, want %v", h.Name, excluded, want)
		}
		var wantIgnore []string
		if ignoreLabel != "" {
			wantIgnore = []string{ignoreLabel}
		}
		if !reflect.DeepEqual(ignore, wantIgnore) {
			t.Errorf("%s: opt-out labels %v, want %v", h.Name, ignore, wantIgnore)
		}
	}
}

// checkPod checks the pod template invariants that hold for every value set.
func checkPod(t *testing.T, r *rendered) {
	t.Helper()
	d := one[appsv1.Deployment](t, r, "Deployment")
	ps := d.Spec.Template.Spec
	if ps.AutomountServiceAccountToken == nil || !*ps.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not true")
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		t.Error("the webhook pod uses host namespaces")
	}
	psc := ps.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", psc)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no container securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot, sc.RunAsUser == nil || *sc.RunAsUser != 65532:
		t.Errorf("container runs as %v/%v", sc.RunAsNonRoot, sc.RunAsUser)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("privileged")
	case sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities %+v", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("container seccompProfile %+v", sc.SeccompProfile)
	}
	if !reflect.DeepEqual(c.Command, []string{"/portreeve"}) || len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("entrypoint %v %v", c.Command, c.Args)
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "health" {
			t.Errorf("probe %+v", p)
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness path %s", c.LivenessProbe.HTTPGet.Path)
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness path %s", c.ReadinessProbe.HTTPGet.Path)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		if p.HostPort != 0 {
			t.Errorf("port %s uses hostPort", p.Name)
		}
	}
	if !reflect.DeepEqual(ports, map[string]int32{"webhook": 9443, "metrics": 8080, "health": 8081}) {
		t.Errorf("container ports %v", ports)
	}
	field := func(e corev1.EnvVar, name, path string) bool {
		return e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == path
	}
	if len(c.Env) != 3 || !field(c.Env[0], "POD_NAMESPACE", "metadata.namespace") || !field(c.Env[1], "POD_NAME", "metadata.name") ||
		c.Env[2].Name != "GOMEMLIMIT" || c.Env[2].ValueFrom == nil || c.Env[2].ValueFrom.ResourceFieldRef == nil ||
		*c.Env[2].ValueFrom.ResourceFieldRef != (corev1.ResourceFieldSelector{ContainerName: c.Name, Resource: "limits.memory"}) {
		t.Errorf("env %+v", c.Env)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	for _, p := range []string{"/config", "/certs", "/tmp"} {
		if _, ok := mounts[p]; !ok {
			t.Errorf("no volume at %s", p)
		}
	}
	if !mounts["/config"].ReadOnly {
		t.Error("/config is writable")
	}
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
	}
	if v := vols[mounts["/tmp"].Name]; v.EmptyDir == nil {
		t.Errorf("/tmp is not an emptyDir: %+v", v)
	}
}

func volumeAt(t *testing.T, d *appsv1.Deployment, path string) (corev1.VolumeMount, corev1.Volume) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Name == m.Name {
					return m, v
				}
			}
		}
	}
	t.Fatalf("no volume at %s", path)
	return corev1.VolumeMount{}, corev1.Volume{}
}

func serveArgs(fullname, mode string, durations bool, extra ...string) []string {
	args := []string{
		"serve",
		"--webhook-port=9443",
		"--cert-dir=/certs",
		"--config=/config/config.yaml",
		"--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081",
		"--cert-mode=" + mode,
		"--cert-secret=" + fullname + "-cert",
		"--service-name=" + fullname,
		"--webhook-config-name=" + fullname,
		"--namespace=$(POD_NAMESPACE)",
		"--enforcement=observe",
	}
	if durations {
		args = append(args, "--ca-duration=43800h", "--cert-duration=8760h", "--renew-before=720h")
	}
	return append(args, extra...)
}

func kindSet(extra map[string]int, drop ...string) map[string]int {
	k := map[string]int{
		"Deployment": 1, "Service": 1, "ServiceAccount": 1, "PodDisruptionBudget": 1, "ConfigMap": 2, "Secret": 1, "Job": 1,
		"ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
		"ValidatingWebhookConfiguration": 1, "MutatingWebhookConfiguration": 1,
		"Pod": 1, // the helm test (options_test.go)
	}
	for _, d := range drop {
		delete(k, d)
	}
	for n, c := range extra {
		k[n] = c
	}
	return k
}

func defaultExpect(fullname string) webhookExpect {
	// The default installation observes, and so fails open.
	return webhookExpect{fullname: fullname, failurePolicy: admissionregistrationv1.Ignore, timeout: 5, matchConditions: true}
}

func TestRender(t *testing.T) {
	certManagerKinds := map[string]int{"Issuer": 2, "Certificate": 2}
	tests := []struct {
		name        string
		kubeVersion string
		args        []string
		fullname    string // "" means portreeve
		kinds       map[string]int
		excluded    []string // beyond the release namespace and kube-system
		ignoreLabel string   // expected opt-out label; "" for none
		check       func(t *testing.T, r *rendered)
	}{
		{
			name:        "defaults",
			kinds:       kindSet(nil),
			ignoreLabel: "portreeve.io/ignore",
			check: func(t *testing.T, r *rendered) {
				v, m, vAnn, mAnn := hooks(r)
				checkHooks(t, "validating", v, false, defaultExpect("portreeve"))
				checkHooks(t, "mutating", m, true, defaultExpect("portreeve"))
				if len(vAnn)+len(mAnn) != 0 {
					t.Errorf("annotations on webhook configurations in self-signed mode: %v %v", vAnn, mAnn)
				}
				for _, o := range r.byKind("ValidatingWebhookConfiguration") {
					if o.Name != "portreeve" {
						t.Errorf("validating configuration named %s", o.Name)
					}
				}
				if o := r.byKind("MutatingWebhookConfiguration"); o[0].Name != "portreeve" {
					t.Errorf("mutating configuration named %s", o[0].Name)
				}

				d := one[appsv1.Deployment](t, r, "Deployment")
				if *d.Spec.Replicas != 2 {
					t.Errorf("replicas %d", *d.Spec.Replicas)
				}
				c := d.Spec.Template.Spec.Containers[0]
				if c.Image != "portreeve/portreeve:0.1.0" || c.ImagePullPolicy != corev1.PullIfNotPresent {
					t.Errorf("image %s %s", c.Image, c.ImagePullPolicy)
				}
				if want := serveArgs("portreeve", "self-signed", true); !reflect.DeepEqual(c.Args, want) {
					t.Errorf("args\n got %q\nwant %q", c.Args, want)
				}
				mount, vol := volumeAt(t, d, "/certs")
				if vol.EmptyDir == nil || mount.ReadOnly {
					t.Errorf("self-signed /certs must be a writable emptyDir: %+v %+v", mount, vol)
				}
				if _, vol := volumeAt(t, d, "/config"); vol.ConfigMap == nil || vol.ConfigMap.Name != "portreeve-config" {
					t.Errorf("/config volume %+v", vol)
				}
				if len(d.Spec.Template.Annotations) != 0 {
					t.Errorf("pod annotations %v (checksum must be opt-in)", d.Spec.Template.Annotations)
				}
				if d.Spec.Template.Spec.PriorityClassName != "" {
					t.Error("priorityClassName set by default")
				}
				aa := d.Spec.Template.Spec.Affinity
				if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
					aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" ||
					len(aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
					t.Errorf("affinity %+v", aa)
				} else {
					sel := aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector
					if sel == nil || !reflect.DeepEqual(sel.MatchLabels, d.Spec.Selector.MatchLabels) {
						t.Errorf("anti-affinity selector %+v, want the Deployment's %v", sel, d.Spec.Selector.MatchLabels)
					}
				}

				pdb := one[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget")
				if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 ||
					!reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
					t.Errorf("pdb %+v", pdb.Spec)
				}

				svc := one[corev1.Service](t, r, "Service")
				if svc.Name != "portreeve" || svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 ||
					svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.String() != "webhook" || svc.Spec.Ports[0].Name != "webhook" ||
					!reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
					t.Errorf("service %+v", svc.Spec)
				}
				sa := one[corev1.ServiceAccount](t, r, "ServiceAccount")
				if sa.Name != d.Spec.Template.Spec.ServiceAccountName {
					t.Errorf("service account %s, pod uses %s", sa.Name, d.Spec.Template.Spec.ServiceAccountName)
				}

				sec := one[corev1.Secret](t, r, "Secret")
				wantData := map[string][]byte{"tls.crt": {}, "tls.key": {}, "ca.crt": {}, "ca.key": {}}
				if sec.Name != "portreeve-cert" || sec.Type != corev1.SecretTypeOpaque || !reflect.DeepEqual(sec.Data, wantData) {
					t.Errorf("secret %s type %s data %v", sec.Name, sec.Type, sec.Data)
				}
				for _, o := range r.Objects {
					if o.Kind == "ClusterRole" || o.Kind == "ClusterRoleBinding" ||
						o.Kind == "ValidatingWebhookConfiguration" || o.Kind == "MutatingWebhookConfiguration" {
						if o.Namespace != "" {
							t.Errorf("cluster-scoped %s %s has namespace %s", o.Kind, o.Name, o.Namespace)
						}
					} else if o.Namespace != releaseNamespace {
						t.Errorf("%s %s in namespace %q", o.Kind, o.Name, o.Namespace)
					}
				}
			},
		},
		{
			name:        "cert-manager",
			args:        []string{"--set", "certs.mode=cert-manager"},
			kinds:       kindSet(certManagerKinds, "Secret"),
			ignoreLabel: "portreeve.io/ignore",
			check: func(t *testing.T, r *rendered) {
				v, m, vAnn, mAnn := hooks(r)
				checkHooks(t, "validating", v, false, defaultExpect("portreeve"))
				checkHooks(t, "mutating", m, true, defaultExpect("portreeve"))
				want := map[string]string{"cert-manager.io/inject-ca-from": releaseNamespace + "/portreeve-serving"}
				if !reflect.DeepEqual(vAnn, want) || !reflect.DeepEqual(mAnn, want) {
					t.Errorf("annotations %v %v, want %v", vAnn, mAnn, want)
				}
				cert, ok := r.find("Certificate", "portreeve-serving")
				if !ok {
					t.Fatal("no serving Certificate")
				}
				svc := "portreeve"
				wantDNS := []any{svc, svc + "." + releaseNamespace, svc + "." + releaseNamespace + ".svc", svc + "." + releaseNamespace + ".svc.cluster.local"}
				if got := lookupPath(cert.Map, "spec", "dnsNames"); !reflect.DeepEqual(got, wantDNS) {
					t.Errorf("dnsNames %v, want %v", got, wantDNS)
				}
				if got := lookupPath(cert.Map, "spec", "secretName"); got != "portreeve-cert" {
					t.Errorf("serving secretName %v", got)
				}
				if got := lookupPath(cert.Map, "spec", "issuerRef", "name"); got != "portreeve-ca" {
					t.Errorf("serving issuer %v", got)
				}
				if got := lookupPath(cert.Map, "spec", "ipAddresses"); got != nil {
					t.Errorf("ipAddresses %v", got)
				}
				ca, ok := r.find("Certificate", "portreeve-ca")
				if !ok || lookupPath(ca.Map, "spec", "isCA") != true || lookupPath(ca.Map, "spec", "secretName") != "portreeve-ca" ||
					lookupPath(ca.Map, "spec", "issuerRef", "name") != "portreeve-selfsigned" {
					t.Errorf("CA certificate %v", ca.Map)
				}
				if iss, ok := r.find("Issuer", "portreeve-selfsigned"); !ok || lookupPath(iss.Map, "spec", "selfSigned") == nil {
					t.Errorf("self-signed issuer %v", iss.Map)
				}
				if iss, ok := r.find("Issuer", "portreeve-ca"); !ok || lookupPath(iss.Map, "spec", "ca", "secretName") != "portreeve-ca" {
					t.Errorf("CA issuer %v", iss.Map)
				}
				d := one[appsv1.Deployment](t, r, "Deployment")
				if want := serveArgs("portreeve", "cert-manager", false); !reflect.DeepEqual(d.Spec.Template.Spec.Containers[0].Args, want) {
					t.Errorf("args\n got %q\nwant %q", d.Spec.Template.Spec.Containers[0].Args, want)
				}
				mount, vol := volumeAt(t, d, "/certs")
				if vol.Secret == nil || vol.Secret.SecretName != "portreeve-cert" || !mount.ReadOnly {
					t.Errorf("cert-manager /certs must be the read-only Secret: %+v %+v", mount, vol)
				}
			},
		},
		{
			name: "cert-manager with own issuer",
			args: []string{"--set", "certs.mode=cert-manager", "--set", "certs.certManager.issuerRef.name=corp-ca",
				"--set", "certs.certManager.issuerRef.kind=ClusterIssuer", "--set", "certs.certManager.ipAddresses={127.0.0.1}",
				"--set", "certs.certManager.dnsNames={webhook.example.com}", "--set", "webhook.caBundle=Zm9v"},
			kinds:       kindSet(map[string]int{"Certificate": 1}, "Secret"),
			ignoreLabel: "portreeve.io/ignore",
			check: func(t *testing.T, r *rendered) {
				cert, ok := r.find("Certificate", "portreeve-serving")
				if !ok {
					t.Fatal("no serving Certificate")
				}
				if got := lookupPath(cert.Map, "spec", "issuerRef"); !reflect.DeepEqual(got, map[string]any{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}) {
					t.Errorf("issuerRef %v", got)
				}
				if got := lookupPath(cert.Map, "spec", "ipAddresses"); !reflect.DeepEqual(got, []any{"127.0.0.1"}) {
					t.Errorf("ipAddresses %v", got)
				}
				if got := lookupPath(cert.Map, "spec", "dnsNames").([]any); len(got) != 5 || got[4] != "webhook.example.com" {
					t.Errorf("dnsNames %v", got)
				}
				// cainjector owns the caBundle in this mode: the value is ignored.
				v, m, _, _ := hooks(r)
				checkHooks(t, "validating", v, false, defaultExpect("portreeve"))
				checkHooks(t, "mutating", m, true, defaultExpect("portreeve"))
			},
		},
		{
			name:        "url mode",
			args:        []string{"--set", "webhook.url=https://127.0.0.1:9443", "--set", "webhook.caBundle=LS0tLS1CRUdJTg=="},
			kinds:       kindSet(nil, "Pod"), // no Service: no helm test
			ignoreLabel: "portreeve.io/ignore",
			check: func(t *testing.T, r *rendered) {
				e := defaultExpect("portreeve")
				e.url, e.caBundle = "https://127.0.0.1:9443", "-----BEGIN"
				v, m, _, _ := hooks(r)
				checkHooks(t, "validating", v, false, e)
				checkHooks(t, "mutating", m, true, e)
			},
		},
		{
			name: "namespaces, opt-out label, policies",
			// caBundle is ignored with the Service: the rotator owns it.
			args: []string{"--set", "webhook.excludeNamespaces={monitoring,ingress-nginx}", "--set", "webhook.ignoreLabel.key=example.com/no-portreeve",
				"--set", "webhook.caBundle=Zm9v",
				"--set", "webhook.validating.failurePolicy=Ignore", "--set", "webhook.validating.timeoutSeconds=3",
				"--set", "webhook.mutating.failurePolicy=Ignore", "--set", "webhook.mutating.timeoutSeconds=2"},
			kinds:       kindSet(nil),
			excluded:    []string{"monitoring", "ingress-nginx"},
			ignoreLabel: "example.com/no-portreeve",
			check: func(t *testing.T, r *rendered) {
				v, m, _, _ := hooks(r)
				e := defaultExpect("portreeve")
				e.failurePolicy, e.timeout = admissionregistrationv1.Ignore, 3
				checkHooks(t, "validating", v, false, e)
				e.timeout = 2
				checkHooks(t, "mutating", m, true, e)
			},
		},
		{
			name:  "opt-out label disabled, matchConditions disabled",
			args:  []string{"--set", "webhook.ignoreLabel.enabled=false", "--set", "webhook.matchConditions.enabled=false"},
			kinds: kindSet(nil),
			check: func(t *testing.T, r *rendered) {
				v, m, _, _ := hooks(r)
				e := defaultExpect("portreeve")
				e.matchConditions = false
				checkHooks(t, "validating", v, false, e)
				checkHooks(t, "mutating", m, true, e)
			},
		},
		{
			name:        "without --kube-version (GitOps) matchConditions are rendered",
			kubeVersion: noKubeVersion,
			kinds:       kindSet(nil),
			ignoreLabel: "portreeve.io/ignore",
			check: func(t *testing.T, r *rendered) {
				v, m, _, _ := hooks(r)
				checkHooks(t, "validating", v, false, defaultExpect("portreeve"))
				checkHooks(t, "mutating", m, true, defaultExpect("portreeve"))
				// The same webhook configurations as for a real cluster's version.
				webhooks := []string{"--show-only", "templates/validatingwebhookconfiguration.yaml", "--show-only", "templates/mutatingwebhookconfiguration.yaml"}
				if a, b := render(t, noKubeVersion, webhooks...), render(t, "", webhooks...); a.Raw != b.Raw {
					t.Errorf("webhook configurations differ without --kube-version:\n%s\nwith:\n%s", a.Raw, b.Raw)
				}
			},
		},
		{
			name:        "enforce fails closed",
			args:        []string{"--set", "enforcement=enforce"},
			kinds:       kindSet(nil),
			ignoreLabel: "portreeve.io/ignore",
			check: func(t *testing.T, r *rendered) {
				v, m, _, _ := hooks(r)
				e := defaultExpect("portreeve")
				e.failurePolicy = admissionregistrationv1.Fail
				checkHooks(t, "validating", v, false, e)
				checkHooks(t, "mutating", m, true, e)
				args := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args
				if !slices.Contains(args, "--enforcement=enforce") || slices.Contains(args, "--enforcement=observe") {
					t.Errorf("args %q", args)
				}
			},
		},
		{
			name:        "an explicit failurePolicy wins over enforcement",
			args:        []string{"--set", "enforcement=enforce", "--set", "webhook.mutating.failurePolicy=Ignore"},
			kinds:       kindSet(nil),
			ignoreLabel: "portreeve.io/ignore",
			check: func(t *testing.T, r *rendered) {
				v, m, _, _ := hooks(r)
				e := defaultExpect("portreeve")
				e.failurePolicy = admissionregistrationv1.Fail
				checkHooks(t, "validating", v, false, e)
				e.failurePolicy = admissionregistrationv1.Ignore
				checkHooks(t, "mutating", m, true, e)
			},
		},
		{
			name:        "no configuration check",
			args:        []string{"--set", "configCheck.enabled=false"},
			kinds:       kindSet(map[string]int{"ConfigMap": 1}, "Job"),
			ignoreLabel: "portreeve.io/ignore",
		},
		{
			name: "options",
			args: []string{"--set", "priorityClassName=system-cluster-critical", "--set", "extraArgs={--zap-log-level=debug,--enable-http2=false}",
				"--set", "rolloutOnConfigChange=true", "--set", "metrics.service.enabled=true", "--set", "image.tag=dev",
				"--set", "image.pullPolicy=Always", "--set", "replicas=3", "--set", "podDisruptionBudget.minAvailable=2",
				"--set", "webhook.mutating.enabled=false"},
			kinds:       kindSet(nil, "MutatingWebhookConfiguration"),
			ignoreLabel: "portreeve.io/ignore",
			check: func(t *testing.T, r *rendered) {
				d := one[appsv1.Deployment](t, r, "Deployment")
				ps := d.Spec.Template.Spec
				if ps.PriorityClassName != "system-cluster-critical" || *d.Spec.Replicas != 3 {
					t.Errorf("priorityClassName %q replicas %d", ps.PriorityClassName, *d.Spec.Replicas)
				}
				c := ps.Containers[0]
				want := serveArgs("portreeve", "self-signed", true, "--zap-log-level=debug", "--enable-http2=false")
				// No mutating configuration: the rotator must not wait for one.
				want = slices.Insert(want, slices.Index(want, "--namespace=$(POD_NAMESPACE)"), "--mutating-webhook=false")
				if !reflect.DeepEqual(c.Args, want) {
					t.Errorf("args\n got %q\nwant %q", c.Args, want)
				}
				if c.Image != "portreeve/portreeve:dev" || c.ImagePullPolicy != corev1.PullAlways {
					t.Errorf("image %s %s", c.Image, c.ImagePullPolicy)
				}
				sum := d.Spec.Template.Annotations["checksum/config"]
				if len(sum) != 64 {
					t.Errorf("checksum/config annotation %q", sum)
				}
				svc := one[corev1.Service](t, r, "Service")
				if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[1].Name != "metrics" || svc.Spec.Ports[1].Port != 8080 {
					t.Errorf("service ports %+v", svc.Spec.Ports)
				}
				pdb := one[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget")
				if pdb.Spec.MinAvailable.IntValue() != 2 {
					t.Errorf("minAvailable %v", pdb.Spec.MinAvailable)
				}
				// The checksum follows the configuration.
				other := render(t, "", "--set", "rolloutOnConfigChange=true", "--set", "config.rules.host-network.mode=warn")
				if s := one[appsv1.Deployment](t, other, "Deployment").Spec.Template.Annotations["checksum/config"]; s == sum || len(s) != 64 {
					t.Errorf("checksum did not change with the configuration: %q vs %q", s, sum)
				}
			},
		},
		{
			name:        "single replica has no PodDisruptionBudget",
			args:        []string{"--set", "replicas=1"},
			kinds:       kindSet(nil, "PodDisruptionBudget"),
			ignoreLabel: "portreeve.io/ignore",
		},
		{
			name:        "release name flows into every name",
			args:        []string{"--set", "fullnameOverride=edge"},
			fullname:    "edge",
			kinds:       kindSet(nil),
			ignoreLabel: "portreeve.io/ignore",
			check: func(t *testing.T, r *rendered) {
				v, m, _, _ := hooks(r)
				checkHooks(t, "validating", v, false, defaultExpect("edge"))
				checkHooks(t, "mutating", m, true, defaultExpect("edge"))
				d := one[appsv1.Deployment](t, r, "Deployment")
				if want := serveArgs("edge", "self-signed", true); !reflect.DeepEqual(d.Spec.Template.Spec.Containers[0].Args, want) {
					t.Errorf("args %q", d.Spec.Template.Spec.Containers[0].Args)
				}
				if one[corev1.Secret](t, r, "Secret").Name != "edge-cert" {
					t.Error("secret name")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.kubeVersion, tc.args...)
			if got := r.kinds(); !reflect.DeepEqual(got, tc.kinds) {
				t.Errorf("kinds\n got %v\nwant %v", got, tc.kinds)
			}
			checkNamespaceSelector(t, r, tc.excluded, tc.ignoreLabel)
			checkPod(t, r)
			checkNoWildcards(t, r)
			checkRBAC(t, r, cmp.Or(tc.fullname, "portreeve"))
			again := render(t, tc.kubeVersion, tc.args...)
			if again.Raw != r.Raw {
				t.Error("two renders of the same values differ")
			}
			if strings.Contains(r.Raw, "BEGIN CERTIFICATE") || strings.Contains(r.Raw, "PRIVATE KEY") {
				t.Error("the render contains key material")
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// checkNoWildcards: no rule of any role grants "*" verbs, resources or groups.
func checkNoWildcards(t *testing.T, r *rendered) {
	t.Helper()
	for _, o := range r.Objects {
		var rules []rbacv1.PolicyRule
		switch v := o.Typed.(type) {
		case *rbacv1.ClusterRole:
			rules = v.Rules
			if v.AggregationRule != nil {
				t.Errorf("ClusterRole %s aggregates", v.Name)
			}
		case *rbacv1.Role:
			rules = v.Rules
		}
		for _, rule := range rules {
			for _, s := range slices.Concat(rule.Verbs, rule.Resources, rule.APIGroups, rule.ResourceNames) {
				if strings.Contains(s, "*") {
					t.Errorf("%s %s grants a wildcard: %+v", o.Kind, o.Name, rule)
				}
			}
			if len(rule.NonResourceURLs) != 0 {
				t.Errorf("%s %s grants non-resource URLs", o.Kind, o.Name)
			}
		}
	}
}

// checkRBAC compares the roles and bindings with exactly what Portreeve needs.
func checkRBAC(t *testing.T, r *rendered, fullname string) {
	t.Helper()
	read := []string{"get", "list", "watch"}
	wantCluster := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services", "namespaces", "replicationcontrollers", "podtemplates"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "daemonsets", "statefulsets", "replicasets"}, Verbs: read},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: read},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: read},
		{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"gateways", "listenersets", "httproutes", "grpcroutes", "tlsroutes"}, Verbs: read},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations", "mutatingwebhookconfigurations"},
			ResourceNames: []string{fullname}, Verbs: []string{"get", "update", "patch"}},
	}
	wantRole := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{fullname + "-cert"},
			Verbs: []string{"get", "list", "watch", "update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: read},
		// The audit's leader election (serve's Lease is <--webhook-config-name>-audit) and the reservations.
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
	}
	if slices.Contains(one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args, "--reservations=false") {
		wantRole = append(wantRole, rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
			ResourceNames: []string{fullname + "-audit"}, Verbs: []string{"get", "update"}})
	} else {
		wantRole = append(wantRole, rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
			Verbs: []string{"get", "list", "update", "delete"}})
	}
	cr := one[rbacv1.ClusterRole](t, r, "ClusterRole")
	if cr.Name != fullname || !reflect.DeepEqual(cr.Rules, wantCluster) {
		t.Errorf("ClusterRole %s rules\n got %+v\nwant %+v", cr.Name, cr.Rules, wantCluster)
	}
	role := one[rbacv1.Role](t, r, "Role")
	if role.Name != fullname || role.Namespace != releaseNamespace || !reflect.DeepEqual(role.Rules, wantRole) {
		t.Errorf("Role %s/%s rules\n got %+v\nwant %+v", role.Namespace, role.Name, role.Rules, wantRole)
	}
	// The Lease the Role names is the one serve uses with the chart's flags:
	// --leader-election-id, else --webhook-config-name + "-audit".
	lease := ""
	for _, a := range one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--webhook-config-name="); ok && lease == "" {
			lease = v + "-audit"
		}
		if v, ok := strings.CutPrefix(a, "--leader-election-id="); ok {
			lease = v
		}
	}
	if lease != fullname+"-audit" {
		t.Errorf("serve elects the auditor with the Lease %q, the Role allows %q", lease, fullname+"-audit")
	}
	// Secrets never appear cluster-wide, webhook configurations never without resourceNames.
	for _, rule := range cr.Rules {
		if slices.Contains(rule.Resources, "secrets") || slices.Contains(rule.Resources, "configmaps") {
			t.Errorf("ClusterRole grants %v", rule.Resources)
		}
		if slices.Contains(rule.APIGroups, "admissionregistration.k8s.io") &&
			(len(rule.ResourceNames) == 0 || slices.Contains(rule.Verbs, "list") || slices.Contains(rule.Verbs, "watch") ||
				slices.Contains(rule.Verbs, "create") || slices.Contains(rule.Verbs, "delete")) {
			t.Errorf("webhook configurations granted too broadly: %+v", rule)
		}
		for _, v := range rule.Verbs {
			if !slices.Contains([]string{"get", "list", "watch", "update", "patch"}, v) {
				t.Errorf("ClusterRole verb %s", v)
			}
		}
	}
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: fullname, Namespace: releaseNamespace}
	crb := one[rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding")
	if crb.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: fullname}) ||
		!reflect.DeepEqual(crb.Subjects, []rbacv1.Subject{sa}) {
		t.Errorf("ClusterRoleBinding %+v %+v", crb.RoleRef, crb.Subjects)
	}
	rb := one[rbacv1.RoleBinding](t, r, "RoleBinding")
	if rb.Namespace != releaseNamespace || rb.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: fullname}) ||
		!reflect.DeepEqual(rb.Subjects, []rbacv1.Subject{sa}) {
		t.Errorf("RoleBinding %s %+v %+v", rb.Namespace, rb.RoleRef, rb.Subjects)
	}
}

func TestRBACCanBeDisabled(t *testing.T) {
	r := render(t, "", "--set", "rbac.create=false", "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=existing")
	want := kindSet(nil, "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount")
	if got := r.kinds(); !reflect.DeepEqual(got, want) {
		t.Errorf("kinds %v, want %v", got, want)
	}
	if sa := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.ServiceAccountName; sa != "existing" {
		t.Errorf("serviceAccountName %s", sa)
	}
}
