package offline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

func newReviewer(t testing.TB, configYAML string) *review.Reviewer {
	t.Helper()
	var cfg *policies.Config
	if configYAML != "" {
		var err error
		cfg, err = policies.ParseConfig([]byte(configYAML), nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	e, err := policies.New(t.Context(), policies.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return review.NewReviewer(e)
}

func toJSON(t testing.TB, y string) []byte {
	t.Helper()
	b, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var anonymous = policies.User{Username: "alice", Groups: []string{"system:authenticated"}}

// reviewObject reviews raw as a CREATE by anonymous in namespace (when the
// object names none), as eval does, and returns eval's report.
func reviewObject(t testing.TB, r *review.Reviewer, raw []byte, namespace string) (*Report, error) {
	t.Helper()
	req, err := NewRequest(raw, nil, namespace, anonymous)
	if err != nil {
		return nil, err
	}
	out, err := Review(context.Background(), r, req)
	if err != nil {
		return nil, err
	}
	return out.Report("")
}

const teamConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
rules:
  load-balancer: {mode: rewrite}
  node-ports: {mode: rewrite}
  host-ports: {mode: rewrite}
  external-ips: {mode: rewrite}
grants:
  - name: team-a
    namespaces: [team-a]
    nodePorts: ["30100-30199"]
    externalIPs: ["203.0.113.0/24"]
  - name: lb-only
    namespaces: [lb-only]
    loadBalancer: true
`

// A LoadBalancer as the apiserver hands it to a mutating webhook: defaulted.
const defaultedLoadBalancer = `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: true
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  loadBalancerClass: example.com/lb
  loadBalancerSourceRanges: [10.0.0.0/8]
  loadBalancerIP: 198.51.100.7
  externalIPs: [203.0.113.5, 192.0.2.1]
  sessionAffinity: None
  ports:
    - {port: 80, targetPort: 8080, protocol: TCP, nodePort: 30150}
    - {port: 443, targetPort: 8443, protocol: TCP, nodePort: 31000}
  selector: {app: web}
`

func rules(fs []ReportFinding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	slices.Sort(out)
	return out
}

// TestSeedCases is the seed blog's five ways to expose InfluxDB (plus the
// plain pod) under the built-in configuration.
func TestSeedCases(t *testing.T) {
	r := newReviewer(t, "")
	tests := []struct {
		file      string
		namespace string
		denied    []string
	}{
		{"influxdb-hostnetwork.yaml", "default", []string{"host-network"}},
		{"influxdb-hostport.yaml", "default", []string{"host-ports"}},
		{"influxdb-pod.yaml", "default", nil},
		{"influxdb-nodeport.yaml", "default", []string{"node-ports"}},
		{"influxdb-loadbalancer.yaml", "default", []string{"load-balancer", "node-ports"}},
		{"influxdb-ingress.yaml", "default", nil},
		{"influxdb-hostnetwork.yaml", "kube-system", nil},
		{"influxdb-hostport.yaml", "kube-system", nil},
		{"influxdb-pod.yaml", "kube-system", nil},
		{"influxdb-nodeport.yaml", "kube-system", nil},
		{"influxdb-loadbalancer.yaml", "kube-system", nil},
		{"influxdb-ingress.yaml", "kube-system", nil},
	}
	for _, tc := range tests {
		t.Run(tc.namespace+"/"+tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "..", "test", "fixtures", "seed", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := reviewObject(t, r, toJSON(t, string(raw)), tc.namespace)
			if err != nil {
				t.Fatal(err)
			}
			if got := rules(rep.Violations); !slices.Equal(got, tc.denied) {
				t.Fatalf("denied by %v, want %v: %+v", got, tc.denied, rep.Violations)
			}
			if rep.Allowed != (len(tc.denied) == 0) {
				t.Fatalf("allowed = %v with violations %v", rep.Allowed, rep.Violations)
			}
		})
	}
}

func TestRewriteLoadBalancerYieldsValidService(t *testing.T) {
	r := newReviewer(t, teamConfig)
	tests := []struct {
		namespace     string
		wantType      corev1.ServiceType
		wantNodePorts []int32
		wantETP       corev1.ServiceExternalTrafficPolicy
		wantExternal  []string
	}{
		// node ports granted: NodePort, keeping the granted nodePort and moving
		// the other into the range (-1: any port in 30100-30199).
		{"team-a", corev1.ServiceTypeNodePort, []int32{30150, -1}, corev1.ServiceExternalTrafficPolicyLocal, []string{"203.0.113.5"}},
		// nothing granted: ClusterIP with every LoadBalancer and node port field gone.
		{"default", corev1.ServiceTypeClusterIP, []int32{0, 0}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.namespace, func(t *testing.T) {
			rep, err := reviewObject(t, r, toJSON(t, defaultedLoadBalancer), tc.namespace)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Allowed {
				t.Fatalf("rewritten object is still denied: %+v", rep.Violations)
			}
			var svc corev1.Service
			dec := json.NewDecoder(strings.NewReader(string(rep.Patched)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&svc); err != nil {
				t.Fatalf("patched object is not a Service: %v", err)
			}
			s := svc.Spec
			if s.Type != tc.wantType {
				t.Errorf("type = %s, want %s", s.Type, tc.wantType)
			}
			for i, p := range s.Ports {
				if tc.wantNodePorts[i] == -1 && p.NodePort >= 30100 && p.NodePort <= 30199 {
					continue
				}
				if p.NodePort != tc.wantNodePorts[i] {
					t.Errorf("ports[%d].nodePort = %d, want %d", i, p.NodePort, tc.wantNodePorts[i])
				}
			}
			if s.AllocateLoadBalancerNodePorts != nil || s.LoadBalancerClass != nil || s.LoadBalancerSourceRanges != nil ||
				s.LoadBalancerIP != "" || s.HealthCheckNodePort != 0 {
				t.Errorf("LoadBalancer fields left on a %s: %+v", s.Type, s)
			}
			if s.ExternalTrafficPolicy != tc.wantETP {
				t.Errorf("externalTrafficPolicy = %q, want %q", s.ExternalTrafficPolicy, tc.wantETP)
			}
			if !slices.Equal(s.ExternalIPs, tc.wantExternal) {
				t.Errorf("externalIPs = %v, want %v", s.ExternalIPs, tc.wantExternal)
			}
			var changes []review.Change
			if err := json.Unmarshal([]byte(svc.Annotations[review.RewritesAnnotation]), &changes); err != nil || len(changes) == 0 {
				t.Fatalf("annotation %s = %q (%v)", review.RewritesAnnotation, svc.Annotations[review.RewritesAnnotation], err)
			}
			if len(rep.Warnings) != len(changes) {
				t.Errorf("%d warnings for %d changes", len(rep.Warnings), len(changes))
			}
		})
	}
}

func TestRewriteGrantedLoadBalancerSwitchesNodePortsOff(t *testing.T) {
	r := newReviewer(t, teamConfig)
	rep, err := reviewObject(t, r, toJSON(t, `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  ports: [{port: 80, nodePort: 30001}]
`), "lb-only")
	if err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	if err := json.Unmarshal(rep.Patched, &svc); err != nil {
		t.Fatal(err)
	}
	if !rep.Allowed || svc.Spec.Type != corev1.ServiceTypeLoadBalancer ||
		svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts ||
		svc.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("got allowed=%v spec=%+v violations=%v", rep.Allowed, svc.Spec, rep.Violations)
	}
}

func TestRewriteCannotFixHostNetworkPorts(t *testing.T) {
	r := newReviewer(t, teamConfig)
	rep, err := reviewObject(t, r, toJSON(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: agent}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: a, image: x, ports: [{containerPort: 9100}]}]
`), "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Allowed || rep.Patched != nil {
		t.Fatalf("a hostNetwork template must be denied, not rewritten: %+v", rep)
	}
	if got := rules(rep.Violations); !slices.Equal(got, []string{"host-network", "host-ports"}) {
		t.Fatalf("denied by %v", got)
	}
}
