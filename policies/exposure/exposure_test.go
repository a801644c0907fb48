package exposure

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// decode reads JSON as webhook/review does (numbers as json.Number).
func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func kind(t *testing.T, group, k string) *Kind {
	t.Helper()
	for i, kind := range Kinds() {
		if kind.Group == group && kind.Kind == k {
			return &Kinds()[i]
		}
	}
	t.Fatalf("%s/%s is not in the table", group, k)
	return nil
}

func TestExtractPod(t *testing.T) {
	tests := []struct {
		name  string
		group string
		kind  string
		obj   string
		want  []HostPort
		check func(t *testing.T, p *Pod)
	}{
		{"every container list, TCP by default", "", "Pod", `{"spec":{
			"initContainers":[{"name":"init","ports":[{"containerPort":53,"hostPort":53,"protocol":"UDP","hostIP":"10.0.0.1"}]}],
			"containers":[{"name":"app","ports":[{"containerPort":8080},{"containerPort":80,"hostPort":80}]}],
			"ephemeralContainers":[{"name":"debug","ports":[{"containerPort":9,"hostPort":9,"protocol":"SCTP"}]}]}}`,
			[]HostPort{
				{Port: 53, Protocol: "UDP", HostIP: "10.0.0.1", Container: "init", Field: "spec.initContainers[0].ports[0].hostPort", Pointer: "/spec/initContainers/0/ports/0/hostPort"},
				{Port: 80, Protocol: "TCP", Container: "app", Field: "spec.containers[0].ports[1].hostPort", Pointer: "/spec/containers/0/ports/1/hostPort"},
				{Port: 9, Protocol: "SCTP", Container: "debug", Field: "spec.ephemeralContainers[0].ports[0].hostPort", Pointer: "/spec/ephemeralContainers/0/ports/0/hostPort"},
			}, nil},
		{"hostNetwork implies the container ports, in a copy", "apps", "Deployment", `{"spec":{"template":{"spec":{"hostNetwork":true,
			"containers":[{"name":"dns","ports":[{"containerPort":53,"protocol":"UDP"},{"containerPort":9153,"hostPort":9153}]}]}}}}`,
			[]HostPort{
				{Port: 53, Protocol: "UDP", Container: "dns", Field: "spec.template.spec.containers[0].ports[0].hostPort", Pointer: "/spec/template/spec/containers/0/ports/0/hostPort"},
				{Port: 9153, Protocol: "TCP", Container: "dns", Field: "spec.template.spec.containers[0].ports[1].hostPort", Pointer: "/spec/template/spec/containers/0/ports/1/hostPort"},
			}, func(t *testing.T, p *Pod) {
				port := p.Spec["containers"].([]any)[0].(map[string]any)["ports"].([]any)[0].(map[string]any)
				if port["hostPort"] != json.Number("53") {
					t.Errorf("defaulted spec has hostPort %v, want 53", port["hostPort"])
				}
				if !p.HostNetwork || p.Path != "spec.template.spec" || p.Pointer != "/spec/template/spec" {
					t.Errorf("pod %+v", p)
				}
			}},
		{"node scope and service account", "batch", "CronJob", `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{
			"serviceAccount":"legacy","nodeName":"n1","nodeSelector":{"role":"edge"},
			"containers":[{"ports":[{"containerPort":1,"hostPort":1}]}]}}}}}}`,
			[]HostPort{{Port: 1, Protocol: "TCP", Field: "spec.jobTemplate.spec.template.spec.containers[0].ports[0].hostPort", Pointer: "/spec/jobTemplate/spec/template/spec/containers/0/ports/0/hostPort"}},
			func(t *testing.T, p *Pod) {
				if p.ServiceAccount != "legacy" || p.NodeName != "n1" || !reflect.DeepEqual(p.NodeSelector, map[string]string{"role": "edge"}) {
					t.Errorf("pod %+v", p)
				}
			}},
		{"no pod spec is an empty one", "", "PodTemplate", `{"metadata":{"name":"t"}}`, nil, func(t *testing.T, p *Pod) {
			if p.ServiceAccount != "default" || p.Containers != 0 {
				t.Errorf("pod %+v", p)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := decode(t, tc.obj)
			before, _ := json.Marshal(obj)
			x, err := Extract(kind(t, tc.group, tc.kind), obj, DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if x.Pod == nil || x.Service != nil || x.Ingress != nil {
				t.Fatalf("exposure %+v, want a pod", x)
			}
			if !reflect.DeepEqual(x.Pod.HostPorts, tc.want) {
				t.Errorf("host ports\n got  %+v\n want %+v", x.Pod.HostPorts, tc.want)
			}
			if after, _ := json.Marshal(obj); !bytes.Equal(before, after) {
				t.Errorf("Extract changed the object:\n%s\n%s", before, after)
			}
			if tc.check != nil {
				tc.check(t, x.Pod)
			}
		})
	}
}

func TestExtractService(t *testing.T) {
	tests := []struct {
		name      string
		obj       string
		opens     bool
		implied   bool
		nodePorts []NodePort
	}{
		{"ClusterIP opens nothing", `{"spec":{"ports":[{"port":80}]}}`, false, false, nil},
		{"NodePort with an explicit port", `{"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30080},{"port":53,"protocol":"UDP"}]}}`, true, false,
			[]NodePort{{Port: 30080, Protocol: "TCP", Field: "spec.ports[0].nodePort"}}},
		{"LoadBalancer allocates node ports by default", `{"spec":{"type":"LoadBalancer","ports":[{"port":80}]}}`, true, false, nil},
		{"LoadBalancer without node ports", `{"spec":{"type":"LoadBalancer","allocateLoadBalancerNodePorts":false,"ports":[{"port":80}]}}`, false, false, nil},
		{"externalTrafficPolicy Local implies a health check node port", `{"spec":{"type":"LoadBalancer","allocateLoadBalancerNodePorts":false,"externalTrafficPolicy":"Local","ports":[{"port":80}]}}`, false, true, nil},
		{"an explicit health check node port", `{"spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local","healthCheckNodePort":32000,"ports":[{"port":80}]}}`, true, false,
			[]NodePort{{Port: 32000, Protocol: "TCP", Field: "spec.healthCheckNodePort"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Extract(kind(t, "", "Service"), decode(t, tc.obj), DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			s := x.Service
			if s.OpensNodePorts != tc.opens || s.ImpliedHealthCheckNodePort != tc.implied || !reflect.DeepEqual(s.NodePorts, tc.nodePorts) {
				t.Errorf("service %+v", s)
			}
		})
	}
}

func TestExtractIngress(t *testing.T) {
	x, err := Extract(kind(t, "networking.k8s.io", "Ingress"), decode(t, `{
		"metadata":{"annotations":{"kubernetes.io/ingress.class":"nginx"}},
		"spec":{"defaultBackend":{"service":{"name":"x"}},"tls":[{"hosts":["a.example.com"]}],"rules":[
			{"host":"a.example.com","http":{"paths":[{"path":"/api","pathType":"Exact"},{"pathType":"Prefix"}]}},
			{"host":"b.example.com"},
			{"http":{"paths":[{"path":"/"}]}}]}}`), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	ing := x.Ingress
	want := []HostPath{
		{Host: "a.example.com", Path: "/api", Field: "spec.rules[0].host"},
		{Host: "a.example.com", Path: "/", Prefix: true, Field: "spec.rules[0].host"},
		{Host: "b.example.com", Path: "/", Prefix: true, Field: "spec.rules[1].host"},
	}
	if !reflect.DeepEqual(ing.Hosts, want) || ing.Class != "nginx" || !ing.DefaultBackend || ing.Rules != 4 || ing.Paths != 3 {
		t.Errorf("ingress %+v", ing)
	}
}

func TestActive(t *testing.T) {
	tests := []struct {
		group, kind, obj string
		want             bool
	}{
		{"", "Pod", `{"status":{"phase":"Running"}}`, true},
		{"", "Pod", `{"status":{"phase":"Succeeded"}}`, false},
		{"apps", "Deployment", `{"spec":{}}`, true},
		{"apps", "Deployment", `{"spec":{"replicas":0}}`, false},
		{"apps", "StatefulSet", `{"spec":{"replicas":2}}`, true},
		{"apps", "DaemonSet", `{"spec":{}}`, true},
		{"batch", "Job", `{"status":{"conditions":[{"type":"Complete","status":"True"}]}}`, false},
		{"batch", "Job", `{"status":{"conditions":[{"type":"Complete","status":"False"}]}}`, true},
		{"batch", "CronJob", `{"spec":{"suspend":true}}`, false},
		{"", "PodTemplate", `{}`, false},
		{"", "Service", `{}`, true},
	}
	for _, tc := range tests {
		if got := kind(t, tc.group, tc.kind).Active(decode(t, tc.obj)); got != tc.want {
			t.Errorf("%s %s: active %v, want %v", tc.kind, tc.obj, got, tc.want)
		}
	}
}

// TestExtractRefuses: fields of the wrong type are named, and limits stop the
// walk with the limit's flag.
func TestExtractRefuses(t *testing.T) {
	manyPorts := `{"spec":{"containers":[{"ports":[` + strings.Repeat(`{"containerPort":1},`, 10) + `{"containerPort":1}]}]}}`
	tests := []struct {
		name, group, kind, obj string
		lim                    Limits
		field                  string // FieldError.Field, or "" for a LimitError
		flag                   string
	}{
		{"a hostPort as a string", "", "Pod", `{"spec":{"containers":[{"ports":[{"containerPort":80,"hostPort":"80"}]}]}}`, DefaultLimits, "spec.containers[0].ports[0].hostPort", ""},
		{"a fractional port", "", "Pod", `{"spec":{"containers":[{"ports":[{"containerPort":80.5}]}]}}`, DefaultLimits, "spec.containers[0].ports[0].containerPort", ""},
		{"ports not a list", "apps", "DaemonSet", `{"spec":{"template":{"spec":{"containers":[{"ports":{}}]}}}}`, DefaultLimits, "spec.template.spec.containers[0].ports", ""},
		{"the pod spec not an object", "apps", "Deployment", `{"spec":{"template":[]}}`, DefaultLimits, "spec.template", ""},
		{"a nodePort as a string", "", "Service", `{"spec":{"ports":[{"port":80,"nodePort":"30000"}]}}`, DefaultLimits, "spec.ports[0].nodePort", ""},
		{"too many ports", "", "Pod", manyPorts, Limits{Ports: 10}, "", "--max-ports"},
		{"too many containers", "", "Pod", `{"spec":{"containers":[{},{},{}]}}`, Limits{Containers: 2}, "", "--max-containers"},
		{"too many paths", "networking.k8s.io", "Ingress", `{"spec":{"rules":[{"http":{"paths":[{},{},{}]}}]}}`, Limits{IngressPaths: 2}, "", "--max-ingress-paths"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Extract(kind(t, tc.group, tc.kind), decode(t, tc.obj), tc.lim)
			var fe *FieldError
			var le *LimitError
			switch {
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Errorf("error %v, want a FieldError at %s", err, tc.field)
			case tc.flag != "" && (!errors.As(err, &le) || le.Flag != tc.flag):
				t.Errorf("error %v, want a LimitError of %s", err, tc.flag)
			}
		})
	}
}

// TestSame: the UPDATE skip compares what the rules judge, and only that.
func TestSame(t *testing.T) {
	pod := `{"metadata":{"labels":{"v":"%s"}},"spec":{"hostNetwork":%s,"nodeName":"%s","containers":[{"image":"%s","ports":[{"containerPort":80,"hostPort":%s}]}]}}`
	svc := `{"metadata":{"annotations":{"a":"%s"}},"spec":{"type":"%s","selector":{"app":"%s"},"externalTrafficPolicy":"%s"}}`
	ing := `{"spec":{"rules":[{"host":"%s"}]%s}}`
	tests := []struct {
		name, group, kind string
		format            string
		old, new          []any
		same              bool
	}{
		{"an image change", "", "Pod", pod, []any{"1", "false", "", "a:1", "80"}, []any{"2", "false", "", "a:2", "80"}, true},
		{"a hostPort change", "", "Pod", pod, []any{"1", "false", "", "a", "80"}, []any{"1", "false", "", "a", "81"}, false},
		{"hostNetwork", "", "Pod", pod, []any{"1", "false", "", "a", "80"}, []any{"1", "true", "", "a", "80"}, false},
		{"the node", "", "Pod", pod, []any{"1", "false", "n1", "a", "80"}, []any{"1", "false", "n2", "a", "80"}, false},
		{"a selector change", "", "Service", svc, []any{"x", "NodePort", "a", "Cluster"}, []any{"y", "NodePort", "b", "Cluster"}, true},
		{"the Service type", "", "Service", svc, []any{"x", "ClusterIP", "a", "Cluster"}, []any{"x", "NodePort", "a", "Cluster"}, false},
		{"externalTrafficPolicy", "", "Service", svc, []any{"x", "LoadBalancer", "a", "Cluster"}, []any{"x", "LoadBalancer", "a", "Local"}, false},
		{"an Ingress host", "networking.k8s.io", "Ingress", ing, []any{"a.example.com", ""}, []any{"b.example.com", ""}, false},
		{"a default backend", "networking.k8s.io", "Ingress", ing, []any{"a.example.com", ""}, []any{"a.example.com", `,"defaultBackend":{"service":{"name":"x"}}`}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := kind(t, tc.group, tc.kind)
			read := func(args []any) *Exposure {
				x, err := Extract(k, decode(t, sprintf(tc.format, args...)), DefaultLimits)
				if err != nil {
					t.Fatal(err)
				}
				return x
			}
			if got := Same(read(tc.old), read(tc.new)); got != tc.same {
				t.Errorf("Same = %v, want %v", got, tc.same)
			}
		})
	}
}

func sprintf(format string, args ...any) string {
	for _, a := range args {
		format = strings.Replace(format, "%s", a.(string), 1)
	}
	return format
}

// TestTable: every kind has a resource and a family, and only kinds with a
// pod spec are in the pods family.
func TestTable(t *testing.T) {
	seen := map[GroupVersionKind]bool{}
	for _, k := range Kinds() {
		if seen[k.GroupVersionKind] {
			t.Errorf("%s twice", k)
		}
		seen[k.GroupVersionKind] = true
		if k.Resource == "" || k.Version == "" {
			t.Errorf("%s: no resource or version", k)
		}
		if (k.PodSpec != nil) != (k.Family == FamilyPods) {
			t.Errorf("%s: pod spec %v in family %s", k, k.PodSpec, k.Family)
		}
		if Lookup(k.GroupVersionKind) == nil {
			t.Errorf("%s: Lookup misses it", k)
		}
	}
	if Lookup(GroupVersionKind{Group: "extensions", Version: "v1beta1", Kind: "Ingress"}) != nil {
		t.Error("a removed API is reviewed")
	}
}
