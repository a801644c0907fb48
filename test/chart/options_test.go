package chart

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// The operator options: ServiceMonitor, NetworkPolicy, topology spread,
// hostNetwork and ports, the helm test and the Grafana dashboard. Each is
// rendered off and on, and what it renders is checked against the objects
// it must fit (the Service, the Deployment's pods, the Secret).

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart renders, decoded strictly so that a misspelt field fails.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port              string           `json:"port"`
			Path              string           `json:"path"`
			Scheme            string           `json:"scheme"`
			Interval          string           `json:"interval,omitempty"`
			ScrapeTimeout     string           `json:"scrapeTimeout,omitempty"`
			Relabelings       []map[string]any `json:"relabelings,omitempty"`
			MetricRelabelings []map[string]any `json:"metricRelabelings,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func decodeStrict(t *testing.T, m map[string]any, into any) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
}

// podLabels are the labels of the webhook pods.
func podLabels(t *testing.T, r *rendered) labels.Set {
	t.Helper()
	return labels.Set(one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Labels)
}

func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return s.Matches(labels.Set(l))
}

// servicePort returns the Service's port of that name.
func servicePort(t *testing.T, r *rendered, name string) (corev1.ServicePort, bool) {
	t.Helper()
	for _, p := range one[corev1.Service](t, r, "Service").Spec.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

// containerPort returns the webhook container's port of that name.
func containerPort(t *testing.T, r *rendered, name string) int32 {
	t.Helper()
	for _, p := range one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("no container port %s", name)
	return 0
}

func TestServiceMonitor(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		r := render(t, "")
		if n := len(r.byKind("ServiceMonitor")); n != 0 {
			t.Errorf("%d ServiceMonitors", n)
		}
		if _, ok := servicePort(t, r, "metrics"); ok {
			t.Error("the Service exposes metrics by default")
		}
	})
	t.Run("on", func(t *testing.T) {
		r := render(t, "", "--set", "metrics.serviceMonitor.enabled=true", "--set", "ports.metrics=9090")
		objs := r.byKind("ServiceMonitor")
		if len(objs) != 1 {
			t.Fatalf("%d ServiceMonitors", len(objs))
		}
		var sm serviceMonitor
		decodeStrict(t, objs[0].Map, &sm)
		if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Metadata.Name != "portreeve" || sm.Metadata.Namespace != releaseNamespace {
			t.Errorf("ServiceMonitor %s %s/%s", sm.APIVersion, sm.Metadata.Namespace, sm.Metadata.Name)
		}
		// It finds the Service, and only by labels the Service has.
		svc := one[corev1.Service](t, r, "Service")
		if !selects(t, &sm.Spec.Selector, svc.Labels) || len(sm.Spec.Selector.MatchLabels) == 0 {
			t.Errorf("selector %+v does not select the Service's labels %v", sm.Spec.Selector, svc.Labels)
		}
		if !reflect.DeepEqual(sm.Spec.NamespaceSelector.MatchNames, []string{releaseNamespace}) {
			t.Errorf("namespaceSelector %+v", sm.Spec.NamespaceSelector)
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("endpoints %+v", sm.Spec.Endpoints)
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Path != "/metrics" || ep.Scheme != "http" || ep.Interval != "" || ep.ScrapeTimeout != "" {
			t.Errorf("endpoint %+v", ep)
		}
		// The endpoint's port is a Service port (exposed although metrics.service.enabled is false) that
		// forwards to the container's metrics port.
		p, ok := servicePort(t, r, ep.Port)
		if !ok || p.TargetPort.String() != "metrics" || containerPort(t, r, "metrics") != 9090 {
			t.Errorf("the ServiceMonitor scrapes port %q: Service port %+v (found %v), container port %d", ep.Port, p, ok, containerPort(t, r, "metrics"))
		}
		if args := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--metrics-bind-address=:9090") {
			t.Errorf("serve does not listen on the metrics port: %q", args)
		}
	})
	t.Run("options", func(t *testing.T) {
		r := render(t, "", "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.namespace=monitoring",
			"--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack", "--set", "metrics.serviceMonitor.annotations.a=b",
			"--set", "metrics.serviceMonitor.interval=30s", "--set", "metrics.serviceMonitor.scrapeTimeout=10s",
			"--set-json", `metrics.serviceMonitor.metricRelabelings=[{"action":"drop","sourceLabels":["__name__"],"regex":"go_.*"}]`,
			"--set-json", `metrics.serviceMonitor.relabelings=[{"action":"replace","targetLabel":"cluster","replacement":"eu-1"}]`)
		var sm serviceMonitor
		decodeStrict(t, r.byKind("ServiceMonitor")[0].Map, &sm)
		ep := sm.Spec.Endpoints[0]
		if sm.Metadata.Namespace != "monitoring" || sm.Metadata.Labels["release"] != "kube-prometheus-stack" || sm.Metadata.Annotations["a"] != "b" ||
			!reflect.DeepEqual(sm.Spec.NamespaceSelector.MatchNames, []string{releaseNamespace}) ||
			ep.Interval != "30s" || ep.ScrapeTimeout != "10s" || len(ep.MetricRelabelings) != 1 || ep.MetricRelabelings[0]["regex"] != "go_.*" ||
			len(ep.Relabelings) != 1 || ep.Relabelings[0]["targetLabel"] != "cluster" {
			t.Errorf("ServiceMonitor %+v", sm)
		}
	})
}

// checkNetworkPolicyRule checks one ingress rule: its single TCP port and its peers.
func checkNetworkPolicyRule(t *testing.T, what string, rule networkingv1.NetworkPolicyIngressRule, port int32, from []networkingv1.NetworkPolicyPeer) {
	t.Helper()
	if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || rule.Ports[0].Port.IntValue() != int(port) ||
		rule.Ports[0].Protocol == nil || *rule.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("%s: ports %+v, want TCP %d", what, rule.Ports, port)
	}
	if !reflect.DeepEqual(rule.From, from) {
		t.Errorf("%s: from\n got %+v\nwant %+v", what, rule.From, from)
	}
}

func TestNetworkPolicy(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		if n := len(render(t, "").byKind("NetworkPolicy")); n != 0 {
			t.Errorf("%d NetworkPolicies", n)
		}
	})
	t.Run("on: the webhook port from anywhere, the metrics port from nowhere", func(t *testing.T) {
		r := render(t, "", "--set", "networkPolicy.enabled=true")
		np := one[networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
		if np.Namespace != releaseNamespace || !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
			t.Errorf("namespace %s policyTypes %v", np.Namespace, np.Spec.PolicyTypes)
		}
		if !selects(t, &np.Spec.PodSelector, podLabels(t, r)) || len(np.Spec.PodSelector.MatchLabels) == 0 {
			t.Errorf("podSelector %+v does not select the webhook pods %v", np.Spec.PodSelector, podLabels(t, r))
		}
		if len(np.Spec.Ingress) != 1 {
			t.Fatalf("ingress %+v", np.Spec.Ingress)
		}
		checkNetworkPolicyRule(t, "webhook", np.Spec.Ingress[0], 9443, nil)
	})
	t.Run("apiserver CIDRs and scrapers", func(t *testing.T) {
		r := render(t, "", "--set", "networkPolicy.enabled=true", "--set", "ports.webhook=10250", "--set", "ports.metrics=9090",
			"--set", "networkPolicy.webhook.cidrs={10.0.0.0/24,fd00::/64}",
			"--set", "networkPolicy.metrics.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
			"--set", "networkPolicy.metrics.podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus",
			"--set", "networkPolicy.metrics.cidrs={192.0.2.10/32}")
		np := one[networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
		if len(np.Spec.Ingress) != 2 {
			t.Fatalf("ingress %+v", np.Spec.Ingress)
		}
		testPod := r.byKind("Pod")
		if len(testPod) != 1 {
			t.Fatalf("%d test Pods", len(testPod))
		}
		testLabels := testPod[0].Typed.(*corev1.Pod).Labels
		webhookFrom := np.Spec.Ingress[0].From
		if len(webhookFrom) != 3 {
			t.Fatalf("webhook from %+v", webhookFrom)
		}
		// The last peer admits the helm test Pod, and it alone: not the webhook pods themselves.
		tp := webhookFrom[2]
		if tp.PodSelector == nil || tp.NamespaceSelector != nil || tp.IPBlock != nil || !selects(t, tp.PodSelector, testLabels) || selects(t, tp.PodSelector, podLabels(t, r)) {
			t.Errorf("test Pod peer %+v (test Pod labels %v)", tp, testLabels)
		}
		checkNetworkPolicyRule(t, "webhook", np.Spec.Ingress[0], 10250, []networkingv1.NetworkPolicyPeer{
			{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/24"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "fd00::/64"}}, tp})
		checkNetworkPolicyRule(t, "metrics", np.Spec.Ingress[1], 9090, []networkingv1.NetworkPolicyPeer{
			{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "prometheus"}},
			},
			{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.10/32"}},
		})
		if containerPort(t, r, "webhook") != 10250 || containerPort(t, r, "metrics") != 9090 {
			t.Error("the policy's ports are not the container's")
		}
	})
	t.Run("scrapers by namespace only; no test Pod", func(t *testing.T) {
		r := render(t, "", "--set", "networkPolicy.enabled=true", "--set", "tests.enabled=false", "--set", "metrics.serviceMonitor.enabled=true",
			"--set", "networkPolicy.webhook.cidrs={10.0.0.0/24}",
			"--set", "networkPolicy.metrics.namespaceSelector.matchLabels.team=observability")
		np := one[networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
		if len(np.Spec.Ingress) != 2 {
			t.Fatalf("ingress %+v", np.Spec.Ingress)
		}
		checkNetworkPolicyRule(t, "webhook", np.Spec.Ingress[0], 9443, []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/24"}}})
		checkNetworkPolicyRule(t, "metrics", np.Spec.Ingress[1], 8080, []networkingv1.NetworkPolicyPeer{
			{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "observability"}}}})
	})
	t.Run("a ServiceMonitor whose scrapers the policy would shut out is refused", func(t *testing.T) {
		_, stderr, err := runHelm(t, templateArgs("", "--set", "networkPolicy.enabled=true", "--set", "metrics.serviceMonitor.enabled=true")...)
		if err == nil || !strings.Contains(stderr, "name the scrapers in networkPolicy.metrics") {
			t.Errorf("rendered: %v\n%s", err, stderr)
		}
	})
}

func TestTopologySpreadConstraints(t *testing.T) {
	spread := func(t *testing.T, args ...string) []corev1.TopologySpreadConstraint {
		t.Helper()
		r := render(t, "", args...)
		return one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.TopologySpreadConstraints
	}
	r := render(t, "")
	d := one[appsv1.Deployment](t, r, "Deployment")
	own := &metav1.LabelSelector{MatchLabels: d.Spec.Selector.MatchLabels}

	got := d.Spec.Template.Spec.TopologySpreadConstraints
	want := []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone",
		WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: own}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("default\n got %+v\nwant %+v", got, want)
	}
	// The default never keeps a pod Pending.
	for _, c := range got {
		if c.WhenUnsatisfiable != corev1.ScheduleAnyway {
			t.Errorf("default constraint %+v can leave a replica Pending", c)
		}
	}
	if !selects(t, got[0].LabelSelector, d.Spec.Template.Labels) {
		t.Error("the default constraint does not count the webhook pods")
	}

	got = spread(t, "--set-json", `topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule"},`+
		`{"maxSkew":2,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"ScheduleAnyway","labelSelector":{"matchLabels":{"x":"y"}},"minDomains":2}]`)
	two := int32(2)
	want = []corev1.TopologySpreadConstraint{
		{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: own},
		{MaxSkew: 2, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}}, MinDomains: &two},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("custom\n got %+v\nwant %+v", got, want)
	}
	if got := spread(t, "--set-json", "topologySpreadConstraints=[]"); len(got) != 0 {
		t.Errorf("turned off, still %+v", got)
	}
	for name, args := range map[string][]string{
		"bad whenUnsatisfiable": {"--set-json", `topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"k","whenUnsatisfiable":"Never"}]`},
		"no topologyKey":        {"--set-json", `topologySpreadConstraints=[{"maxSkew":1,"whenUnsatisfiable":"ScheduleAnyway"}]`},
	} {
		if _, stderr, err := runHelm(t, templateArgs("", args...)...); err == nil || !strings.Contains(stderr, "schema") {
			t.Errorf("%s: rendered (%v)\n%s", name, err, stderr)
		}
	}
}

func TestHostNetworkAndPorts(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		ps := one[appsv1.Deployment](t, render(t, ""), "Deployment").Spec.Template.Spec
		if ps.HostNetwork || ps.DNSPolicy != "" {
			t.Errorf("hostNetwork %v dnsPolicy %q", ps.HostNetwork, ps.DNSPolicy)
		}
	})
	t.Run("on, with ports free on the nodes", func(t *testing.T) {
		r := render(t, "", "--set", "hostNetwork=true", "--set", "ports.webhook=10443", "--set", "ports.metrics=10080", "--set", "ports.health=10081")
		d := one[appsv1.Deployment](t, r, "Deployment")
		ps := d.Spec.Template.Spec
		if !ps.HostNetwork || ps.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("hostNetwork %v dnsPolicy %q", ps.HostNetwork, ps.DNSPolicy)
		}
		c := ps.Containers[0]
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
			if p.HostPort != 0 {
				t.Errorf("port %s sets hostPort %d (the apiserver defaults it to the container port)", p.Name, p.HostPort)
			}
		}
		if !reflect.DeepEqual(ports, map[string]int32{"webhook": 10443, "metrics": 10080, "health": 10081}) {
			t.Errorf("container ports %v", ports)
		}
		for _, want := range []string{"--webhook-port=10443", "--metrics-bind-address=:10080", "--health-probe-bind-address=:10081"} {
			if !slices.Contains(c.Args, want) {
				t.Errorf("args lack %s: %q", want, c.Args)
			}
		}
		// Probes and the Service name the ports, so they follow.
		if c.LivenessProbe.HTTPGet.Port.String() != "health" || c.ReadinessProbe.HTTPGet.Port.String() != "health" {
			t.Errorf("probes on %v %v", c.LivenessProbe.HTTPGet.Port, c.ReadinessProbe.HTTPGet.Port)
		}
		if p, ok := servicePort(t, r, "webhook"); !ok || p.Port != 443 || p.TargetPort.String() != "webhook" {
			t.Errorf("Service webhook port %+v", p)
		}
		// The webhook configurations still call the Service on 443.
		v, _, _, _ := hooks(r)
		for _, h := range v {
			if h.ClientConfig.Service == nil || *h.ClientConfig.Service.Port != 443 {
				t.Errorf("%s: clientConfig %+v", h.Name, h.ClientConfig)
			}
		}
		// The test Pod is not on the host network: it probes through the Service like any client.
		if tp := r.byKind("Pod"); len(tp) != 1 || tp[0].Typed.(*corev1.Pod).Spec.HostNetwork {
			t.Errorf("test Pod %+v", tp)
		}
	})
	for name, args := range map[string][]string{
		"webhook and metrics on one port": {"--set", "ports.webhook=8080"},
		"metrics and health on one port":  {"--set", "ports.metrics=8081"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, stderr, err := runHelm(t, templateArgs("", args...)...); err == nil || !strings.Contains(stderr, "must differ") {
				t.Errorf("rendered (%v)\n%s", err, stderr)
			}
		})
	}
	for name, args := range map[string][]string{
		"port 0":           {"--set", "ports.webhook=0"},
		"port 65536":       {"--set", "ports.metrics=65536"},
		"port as a string": {"--set-string", "ports.health=8081"},
		"hostNetwork yes":  {"--set-string", "hostNetwork=yes"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, stderr, err := runHelm(t, templateArgs("", args...)...); err == nil || !strings.Contains(stderr, "schema") {
				t.Errorf("rendered (%v)\n%s", err, stderr)
			}
		})
	}
}

// probeFlags are the flags `portreeve probe` defines (cmd/portreeve/probe.go).
func probeFlags(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "portreeve", "probe.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`fs\.\w+\(&o\.\w+, "([a-z-]+)"`).FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	if len(out) < 5 {
		t.Fatalf("found only the probe flags %v in probe.go", out)
	}
	return out
}

func TestHelmTestPod(t *testing.T) {
	flags := probeFlags(t)
	check := func(t *testing.T, r *rendered, paths []string) *corev1.Pod {
		t.Helper()
		objs := r.byKind("Pod")
		if len(objs) != 1 {
			t.Fatalf("%d Pods", len(objs))
		}
		p := objs[0].Typed.(*corev1.Pod)
		if p.Name != "portreeve-test" || p.Namespace != releaseNamespace || p.Annotations["helm.sh/hook"] != "test" ||
			p.Annotations["helm.sh/hook-delete-policy"] != "before-hook-creation,hook-succeeded" {
			t.Errorf("Pod %s/%s annotations %v", p.Namespace, p.Name, p.Annotations)
		}
		ps := p.Spec
		if ps.RestartPolicy != corev1.RestartPolicyNever || ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken ||
			ps.HostNetwork || ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
			t.Errorf("pod spec %+v", ps)
		}
		// The webhook pods' selectors (Deployment, Service, PodDisruptionBudget) never pick the test Pod.
		d := one[appsv1.Deployment](t, r, "Deployment")
		svc := one[corev1.Service](t, r, "Service")
		pdb := one[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget")
		if selects(t, d.Spec.Selector, p.Labels) || labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.Labels)) || selects(t, pdb.Spec.Selector, p.Labels) {
			t.Errorf("the test Pod's labels %v are selected as a webhook pod", p.Labels)
		}
		if len(ps.Containers) != 1 {
			t.Fatalf("%d containers", len(ps.Containers))
		}
		c := ps.Containers[0]
		sc := c.SecurityContext
		if c.Image != d.Spec.Template.Spec.Containers[0].Image || !reflect.DeepEqual(c.Command, []string{"/portreeve"}) || len(c.Args) == 0 || c.Args[0] != "probe" ||
			sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s %v %q securityContext %+v", c.Image, c.Command, c.Args, sc)
		}
		args := map[string][]string{}
		for _, a := range c.Args[1:] {
			name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !ok || !strings.HasPrefix(a, "--") {
				t.Errorf("argument %q is not --flag=value", a)
				continue
			}
			if !slices.Contains(flags, name) {
				t.Errorf("portreeve probe has no flag --%s (it has %v)", name, flags)
			}
			args[name] = append(args[name], value)
		}
		// The probe calls the Service the webhook configurations call, on the port they call.
		v, _, _, _ := hooks(r)
		ref := v[0].ClientConfig.Service
		wantURL := "https://" + ref.Name + "." + ref.Namespace + ".svc:443"
		if *ref.Port != 443 || ref.Name != svc.Name || !reflect.DeepEqual(args["url"], []string{wantURL}) {
			t.Errorf("--url %v, want %s (the webhooks call %+v)", args["url"], wantURL, ref)
		}
		// It dials the Service's IP the kubelet injects (no cluster DNS needed), checking the name.
		wantAddress := "$(" + strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_")) + "_SERVICE_HOST)"
		if !reflect.DeepEqual(args["address"], []string{wantAddress}) || ps.EnableServiceLinks == nil || !*ps.EnableServiceLinks {
			t.Errorf("--address %v, want %s with enableServiceLinks (%v)", args["address"], wantAddress, ps.EnableServiceLinks)
		}
		if !reflect.DeepEqual(args["path"], paths) || !reflect.DeepEqual(args["namespace"], []string{"default"}) || len(args["ca-file"]) != 1 {
			t.Errorf("args %v", args)
		}
		// --ca-file is ca.crt of the certificate Secret, and nothing else of it is mounted.
		var mount *corev1.VolumeMount
		for i := range c.VolumeMounts {
			if strings.HasPrefix(args["ca-file"][0], c.VolumeMounts[i].MountPath+"/") {
				mount = &c.VolumeMounts[i]
			}
		}
		if mount == nil || !mount.ReadOnly {
			t.Fatalf("--ca-file %v is on no read-only mount: %+v", args["ca-file"], c.VolumeMounts)
		}
		for _, vol := range ps.Volumes {
			if vol.Name != mount.Name {
				continue
			}
			file := strings.TrimPrefix(args["ca-file"][0], mount.MountPath+"/")
			if vol.Secret == nil || vol.Secret.SecretName != "portreeve-cert" ||
				!reflect.DeepEqual(vol.Secret.Items, []corev1.KeyToPath{{Key: "ca.crt", Path: file}}) {
				t.Errorf("CA volume %+v", vol)
			}
		}
		return p
	}
	t.Run("on by default", func(t *testing.T) {
		check(t, render(t, ""), []string{"/validate", "/mutate"})
	})
	t.Run("cert-manager: the CA of the Secret cert-manager writes", func(t *testing.T) {
		check(t, render(t, "", "--set", "certs.mode=cert-manager"), []string{"/validate", "/mutate"})
	})
	t.Run("no mutating webhook: only /validate", func(t *testing.T) {
		check(t, render(t, "", "--set", "webhook.mutating.enabled=false"), []string{"/validate"})
	})
	t.Run("probe namespace and wait", func(t *testing.T) {
		r := render(t, "", "--set", "tests.probeNamespace=team-a", "--set", "tests.waitSeconds=5")
		args := r.byKind("Pod")[0].Typed.(*corev1.Pod).Spec.Containers[0].Args
		if !slices.Contains(args, "--namespace=team-a") || !slices.Contains(args, "--wait=5s") {
			t.Errorf("args %q", args)
		}
	})
	t.Run("off", func(t *testing.T) {
		if n := len(render(t, "", "--set", "tests.enabled=false").byKind("Pod")); n != 0 {
			t.Errorf("%d Pods", n)
		}
	})
	t.Run("not in URL mode", func(t *testing.T) {
		if n := len(render(t, "", "--set", "webhook.url=https://127.0.0.1:9443").byKind("Pod")); n != 0 {
			t.Errorf("%d Pods", n)
		}
	})
	t.Run("helm template --skip-tests leaves it out", func(t *testing.T) {
		if n := len(render(t, "", "--skip-tests").byKind("Pod")); n != 0 {
			t.Errorf("%d Pods", n)
		}
	})
}

func TestDashboardConfigMap(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		if _, ok := render(t, "").find("ConfigMap", "portreeve-dashboard"); ok {
			t.Error("dashboard rendered by default")
		}
	})
	file, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "portreeve.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("on", func(t *testing.T) {
		o, ok := render(t, "", "--set", "dashboard.enabled=true").find("ConfigMap", "portreeve-dashboard")
		if !ok {
			t.Fatal("no ConfigMap portreeve-dashboard")
		}
		cm := o.Typed.(*corev1.ConfigMap)
		if cm.Namespace != releaseNamespace || cm.Labels["grafana_dashboard"] != "1" || len(cm.Annotations) != 0 {
			t.Errorf("ConfigMap %s/%s labels %v annotations %v", cm.Namespace, cm.Name, cm.Labels, cm.Annotations)
		}
		if !reflect.DeepEqual(slices.Collect(maps.Keys(cm.Data)), []string{"portreeve.json"}) {
			t.Fatalf("keys %v", slices.Collect(maps.Keys(cm.Data)))
		}
		// The chart's file, byte for byte (but the final newline), and JSON.
		if cm.Data["portreeve.json"] != strings.TrimRight(string(file), "\n") {
			t.Error("the ConfigMap's dashboard differs from dashboards/portreeve.json")
		}
		var d struct {
			UID, Title string
			Panels     []any
		}
		if err := json.Unmarshal([]byte(cm.Data["portreeve.json"]), &d); err != nil || d.UID != "portreeve" || len(d.Panels) == 0 {
			t.Errorf("dashboard JSON: %v %+v", err, d)
		}
	})
	t.Run("namespace, labels and annotations for the sidecar", func(t *testing.T) {
		o, ok := render(t, "", "--set", "dashboard.enabled=true", "--set", "dashboard.namespace=monitoring",
			"--set-json", `dashboard.labels={"grafana_dashboard":null,"dashboards":"portreeve"}`, "--set", "dashboard.annotations.grafana_folder=Portreeve").
			find("ConfigMap", "portreeve-dashboard")
		if !ok {
			t.Fatal("no ConfigMap portreeve-dashboard")
		}
		cm := o.Typed.(*corev1.ConfigMap)
		_, old := cm.Labels["grafana_dashboard"]
		if cm.Namespace != "monitoring" || cm.Labels["dashboards"] != "portreeve" || old || cm.Annotations["grafana_folder"] != "Portreeve" {
			t.Errorf("ConfigMap %s/%s labels %v annotations %v", cm.Namespace, cm.Name, cm.Labels, cm.Annotations)
		}
	})
}

// TestOptionsLint: helm lint --strict passes with every option on.
func TestOptionsLint(t *testing.T) {
	args := []string{"lint", "--strict", chartDir, "--namespace", releaseNamespace,
		"--set", "metrics.serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=true",
		"--set", "networkPolicy.metrics.namespaceSelector.matchLabels.team=observability",
		"--set", "networkPolicy.webhook.cidrs={10.0.0.0/24}", "--set", "hostNetwork=true", "--set", "ports.metrics=10080",
		"--set", "dashboard.enabled=true", "--set", "priorityClassName=system-cluster-critical",
		"--set", "audit.policyReports.enabled=true"}
	out, stderr, err := runHelm(t, args...)
	if err != nil {
		t.Fatalf("helm lint --strict: %v\n%s%s", err, out, stderr)
	}
	if strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
		t.Errorf("lint findings:\n%s", out)
	}
}
