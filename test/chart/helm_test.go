// Package chart tests the Helm chart in charts/portreeve with the real helm binary that
// hack/tools.sh builds: lint, render with several value sets, decode the manifests into the typed
// Kubernetes API objects, and check what the chart promises (webhook scoping, RBAC, pod security,
// schema rejections, deterministic renders).
package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

const (
	releaseName      = "portreeve"
	releaseNamespace = "portreeve-system"
	// defaultKubeVersion is the cluster version the renders assume unless a case says otherwise.
	defaultKubeVersion = "v1.37.2"
	// noKubeVersion renders without --kube-version, as Argo CD and Flux do.
	noKubeVersion = "none"
)

var (
	repoRoot = mustAbs("../..")
	chartDir = filepath.Join(repoRoot, "charts", "portreeve")

	helmOnce sync.Once
	helmBin  string
	helmErr  error
	helmHome string
)

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

func TestMain(m *testing.M) {
	// Keep helm away from the user's configuration, caches and clusters.
	dir, err := os.MkdirTemp("", "portreeve-chart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helmHome = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// helm returns the helm binary built by hack/tools.sh. It skips the test when the binary is
// missing, or fails it when PORTREEVE_REQUIRE_TOOLS is set.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		out, err := exec.Command("bash", filepath.Join(repoRoot, "hack", "tools.sh"), "bindir").Output()
		if err != nil {
			helmErr = fmt.Errorf("hack/tools.sh bindir: %w", err)
			return
		}
		p := filepath.Join(strings.TrimSpace(string(out)), "helm")
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			helmErr = fmt.Errorf("no helm binary at %s", p)
			return
		}
		helmBin = p
	})
	if helmErr != nil {
		if os.Getenv("PORTREEVE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%v (PORTREEVE_REQUIRE_TOOLS is set; build the tools with hack/tools.sh)", helmErr)
		}
		t.Skipf("skipping: %v; build it with hack/tools.sh (set PORTREEVE_REQUIRE_TOOLS=1 to fail instead)", helmErr)
	}
	return helmBin
}

// runHelm runs helm with an isolated home and no reachable cluster.
func runHelm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
		"KUBECONFIG="+filepath.Join(helmHome, "no-kubeconfig"),
	)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// templateArgs builds `helm template` arguments for the chart.
func templateArgs(kubeVersion string, extra ...string) []string {
	args := []string{"template", releaseName, chartDir, "--namespace", releaseNamespace}
	switch kubeVersion {
	case noKubeVersion: // as GitOps tools render: helm's built-in default version
	case "":
		args = append(args, "--kube-version", defaultKubeVersion)
	default:
		args = append(args, "--kube-version", kubeVersion)
	}
	return append(args, extra...)
}

// object is one rendered manifest: typed when the kind is a Kubernetes API kind, a generic map
// otherwise (cert-manager kinds).
type object struct {
	Kind, Name, Namespace string
	Typed                 any
	Map                   map[string]any
}

type rendered struct {
	Raw     string
	Objects []object
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func newTyped(kind string) any {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}
	case "Service":
		return &corev1.Service{}
	case "ServiceAccount":
		return &corev1.ServiceAccount{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "Secret":
		return &corev1.Secret{}
	case "PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "ClusterRole":
		return &rbacv1.ClusterRole{}
	case "ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "Role":
		return &rbacv1.Role{}
	case "RoleBinding":
		return &rbacv1.RoleBinding{}
	case "ValidatingWebhookConfiguration":
		return &admissionregistrationv1.ValidatingWebhookConfiguration{}
	case "MutatingWebhookConfiguration":
		return &admissionregistrationv1.MutatingWebhookConfiguration{}
	case "Job":
		return &batchv1.Job{}
	case "Pod":
		return &corev1.Pod{}
	case "NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	}
	return nil
}

// parseManifests decodes helm's multi-document output. Kubernetes kinds are decoded strictly, so a
// misspelt or misplaced field in a template fails the test.
func parseManifests(t *testing.T, out string) *rendered {
	t.Helper()
	r := &rendered{Raw: out}
	for _, doc := range docSep.Split(out, -1) {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("manifest is not YAML: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("metadata: %v\n%s", err, doc)
		}
		if meta.Kind == "" || meta.APIVersion == "" || meta.Metadata.Name == "" {
			t.Fatalf("manifest without apiVersion, kind or name:\n%s", doc)
		}
		o := object{Kind: meta.Kind, Name: meta.Metadata.Name, Namespace: meta.Metadata.Namespace, Map: m}
		if typed := newTyped(meta.Kind); typed != nil {
			if err := yaml.UnmarshalStrict([]byte(doc), typed); err != nil {
				t.Fatalf("%s %s does not decode strictly: %v\n%s", meta.Kind, meta.Metadata.Name, err, doc)
			}
			o.Typed = typed
		}
		r.Objects = append(r.Objects, o)
	}
	return r
}

// render runs helm template and decodes the result; it fails the test when helm fails.
func render(t *testing.T, kubeVersion string, extra ...string) *rendered {
	t.Helper()
	out, stderr, err := runHelm(t, templateArgs(kubeVersion, extra...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", extra, err, stderr)
	}
	return parseManifests(t, out)
}

func (r *rendered) kinds() map[string]int {
	k := map[string]int{}
	for _, o := range r.Objects {
		k[o.Kind]++
	}
	return k
}

func (r *rendered) byKind(kind string) []object {
	var out []object
	for _, o := range r.Objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r *rendered) find(kind, name string) (object, bool) {
	for _, o := range r.Objects {
		if o.Kind == kind && o.Name == name {
			return o, true
		}
	}
	return object{}, false
}

// one returns the only object of a Kubernetes kind, typed.
func one[T any](t *testing.T, r *rendered, kind string) *T {
	t.Helper()
	objs := r.byKind(kind)
	if len(objs) != 1 {
		t.Fatalf("want exactly one %s, got %d", kind, len(objs))
	}
	v, ok := objs[0].Typed.(*T)
	if !ok {
		t.Fatalf("%s decoded as %T", kind, objs[0].Typed)
	}
	return v
}

// writeValues writes a values file for a test and returns its path.
func writeValues(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// lookupPath walks a generic map with a dotted path.
func lookupPath(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}
