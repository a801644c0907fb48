package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portreeve/portreeve/test/controlplane"
)

// upgradeValues replace README's grants (a values file replaces the whole
// list) with the same ones plus a grant for team-b.
const upgradeValues = `config:
  grants:
    - name: system
      namespaces: [kube-system]
      hostNetwork: true
      hostPorts: ["1-65535"]
      nodePorts: ["30000-32767"]
      loadBalancer: true
    - name: team-a
      namespaces: [team-a]
      hostPorts: ["8000-8999"]
    - name: team-b
      namespaces: [team-b]
      hostPorts: ["9000-9999"]
`

// TestChartSelfSigned installs the chart in its default, self-signed mode and
// runs Portreeve on the host as the chart's ServiceAccount with the chart's
// flags and configuration: it must create its certificates, inject the CA
// into both webhook configurations and deny a hostNetwork pod through them.
// Then: every RBAC rule the chart grants is removed once to show the test
// fails without the ones Portreeve needs; helm upgrade changes the
// configuration but not the CA; helm uninstall leaves no webhook behind.
func TestChartSelfSigned(t *testing.T) {
	r := installChart(t, nil)
	ctx := t.Context()
	kubeconfig := r.serviceAccountKubeconfig(t)
	s, err := r.startServe(ctx, t.TempDir(), kubeconfig, "--cert-ip-addresses=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			s.Stop()
			stopped = true
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Log(s.LogTail())
		}
	})
	t.Logf("portreeve serve %s", strings.Join(s.Args()[1:], " "))

	if !t.Run("starts-gets-certs-denies", func(t *testing.T) {
		if err := s.waitReady(ctx, 2*time.Minute, nil); err != nil {
			t.Fatal(err)
		}
		secret, err := r.waitCertsInjected(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The served certificate is the Secret's, valid for 127.0.0.1
		// under the injected CA: exactly what the apiserver checks.
		served, err := servedCertificate(s.addr, certPool(secret.Data["ca.crt"]))
		if err != nil {
			t.Fatalf("TLS handshake with the injected CA: %v", err)
		}
		if want, _ := certSerial(secret.Data["tls.crt"]); want == nil || served.SerialNumber.Cmp(want) != 0 {
			t.Errorf("served serial %v, Secret's tls.crt %v", served.SerialNumber, want)
		}
		if err := r.waitDenied(ctx, "default", chartHostNetworkPod, "host-network", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		// The grant from the chart's values reached the server.
		if err := r.waitAdmitted(ctx, "team-a", chartHostPortPod(8080), 10*time.Second); err != nil {
			t.Errorf("team-a's granted hostPort: %v", err)
		}
		if err := r.waitDenied(ctx, "default", chartHostPortPod(8080), "host-ports", 10*time.Second); err != nil {
			t.Error(err)
		}
	}) {
		return
	}

	t.Run("upgrade-changes-config-keeps-ca", func(t *testing.T) { testUpgrade(t, r, s) })

	stop()
	t.Run("missing-permission-fails", func(t *testing.T) { testMissingPermissions(t, r, kubeconfig) })

	t.Run("uninstall-leaves-no-webhooks", func(t *testing.T) {
		if out, stderr, err := r.helm(t, "uninstall", chartRelease, "--namespace", chartNamespace, "--wait"); err != nil {
			t.Fatalf("helm uninstall: %v\n%s\n%s", err, out, stderr)
		}
		selector := metav1.ListOptions{}
		vs, err := r.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, selector)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := r.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, selector)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs.Items {
			t.Errorf("ValidatingWebhookConfiguration %s left behind", v.Name)
		}
		for _, m := range ms.Items {
			t.Errorf("MutatingWebhookConfiguration %s left behind", m.Name)
		}
		// With Portreeve gone, a stale configuration (failurePolicy Fail)
		// would reject this pod.
		if err := r.waitAdmitted(ctx, "default", chartHostNetworkPod, 15*time.Second); err != nil {
			t.Errorf("after uninstall: %v", err)
		}
	})
}

// testUpgrade upgrades the release with a new grant and a new timeout: the
// ConfigMap changes and the running server enforces it once the kubelet
// (here: refreshVolumes) updates the file; the CA, the serving certificate
// and the injected caBundles stay the same.
func testUpgrade(t *testing.T, r *release, s *hostServe) {
	ctx := t.Context()
	if err := r.cp.EnsureNamespace(ctx, "team-b", nil); err != nil {
		t.Fatal(err)
	}
	secretBefore, err := r.certSecret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bundlesBefore, err := r.caBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	configBefore, err := r.cs.CoreV1().ConfigMaps(chartNamespace).Get(ctx, chartRelease+"-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.waitDenied(ctx, "team-b", chartHostPortPod(9090), "host-ports", 10*time.Second); err != nil {
		t.Fatalf("before the upgrade: %v", err)
	}

	valuesFile := filepath.Join(t.TempDir(), "upgrade.yaml")
	if err := os.WriteFile(valuesFile, []byte(upgradeValues), 0o600); err != nil {
		t.Fatal(err)
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"upgrade", chartRelease, filepath.Join(root, "charts", "portreeve"), "--namespace", chartNamespace},
		r.values...)
	args = append(args, "-f", valuesFile, "--set", "webhook.validating.timeoutSeconds=4")
	if out, stderr, err := r.helm(t, args...); err != nil {
		t.Fatalf("helm upgrade: %v\n%s\n%s", err, out, stderr)
	}

	configAfter, err := r.cs.CoreV1().ConfigMaps(chartNamespace).Get(ctx, chartRelease+"-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if configAfter.Data["config.yaml"] == configBefore.Data["config.yaml"] || !strings.Contains(configAfter.Data["config.yaml"], "team-b") {
		t.Errorf("the ConfigMap did not take the new grant:\n%s", configAfter.Data["config.yaml"])
	}
	v, err := r.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, chartRelease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := *v.Webhooks[0].TimeoutSeconds; got != 4 {
		t.Errorf("validating timeoutSeconds %d after the upgrade, want 4", got)
	}
	checkSameCA := func(when string) {
		t.Helper()
		secret, err := r.certSecret(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
			if !bytes.Equal(secret.Data[k], secretBefore.Data[k]) {
				t.Errorf("%s: Secret %s changed", when, k)
			}
		}
		bundles, err := r.caBundles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range bundlesBefore {
			if !bytes.Equal(bundles[name], b) || len(b) == 0 {
				t.Errorf("%s: caBundle of %s changed or is empty (%d bytes, was %d)", when, name, len(bundles[name]), len(b))
			}
		}
	}
	checkSameCA("right after helm upgrade")

	if err := s.refreshVolumes(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.waitAdmitted(ctx, "team-b", chartHostPortPod(9090), 30*time.Second); err != nil {
		t.Errorf("the server did not pick up the upgraded configuration: %v", err)
	}
	checkSameCA("after the configuration reload")
}

// TestChartCertManager installs cert-manager (its CRDs, and its controllers
// and cainjector as the project's own programs, run on the host) and the
// chart with certs.mode=cert-manager: the chart's Issuers and Certificates
// become Ready, the cainjector fills both caBundles from
// cert-manager.io/inject-ca-from, and Portreeve, run with the files of the
// issued Secret as its cert dir, serves that certificate and denies a
// hostNetwork pod.
func TestChartCertManager(t *testing.T) {
	binDir := controlplane.RequireTools(t, controlplane.Options{}, controlplane.BinHelm,
		"cert-manager-controller", "cert-manager-cainjector")
	crds := filepath.Join(binDir, "cert-manager-crds.yaml")
	if _, err := os.Stat(crds); err != nil {
		if v := os.Getenv(controlplane.EnvRequireTools); v != "" && v != "0" {
			t.Fatalf("cert-manager CRDs: %v (run hack/tools.sh)", err)
		}
		t.Skipf("cert-manager CRDs: %v (run hack/tools.sh)", err)
	}
	r := installChart(t, func(cp *controlplane.ControlPlane) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		if _, stderr, err := cp.Kubectl(ctx, "apply", "--server-side", "-f", crds); err != nil {
			t.Fatalf("install cert-manager CRDs: %v\n%s", err, stderr)
		}
		if _, stderr, err := cp.Kubectl(ctx, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"); err != nil {
			t.Fatalf("cert-manager CRDs not established: %v\n%s", err, stderr)
		}
		startHostProcessForTest(t, "cert-manager-controller", filepath.Join(binDir, "cert-manager-controller"),
			"--kubeconfig="+cp.KubeconfigPath)
		startHostProcessForTest(t, "cert-manager-cainjector", filepath.Join(binDir, "cert-manager-cainjector"),
			"--kubeconfig="+cp.KubeconfigPath)
	}, "--set", "certs.mode=cert-manager", "--set", "certs.certManager.ipAddresses={127.0.0.1}")
	ctx := t.Context()

	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if out, stderr, err := r.cp.Kubectl(waitCtx, "wait", "-n", chartNamespace, "--for=condition=Ready",
		"certificates.cert-manager.io", "--all", "--timeout=90s"); err != nil {
		d, _, _ := r.cp.Kubectl(waitCtx, "describe", "-n", chartNamespace, "certificates.cert-manager.io,issuers.cert-manager.io")
		t.Fatalf("Certificates not Ready: %v\n%s%s\n%s", err, out, stderr, d)
	}
	out, _, _ := r.cp.Kubectl(ctx, "get", "-n", chartNamespace, "issuers.cert-manager.io,certificates.cert-manager.io")
	t.Logf("cert-manager objects of the chart:\n%s", out)
	secret, err := r.waitCertsInjected(ctx, time.Minute)
	if err != nil {
		t.Fatalf("cainjector (inject-ca-from): %v", err)
	}

	s := r.startServeForTest(t, r.serviceAccountKubeconfig(t))
	t.Logf("portreeve serve %s", strings.Join(s.Args()[1:], " "))
	if err := s.waitReady(ctx, 2*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	served, err := servedCertificate(s.addr, certPool(secret.Data["ca.crt"]))
	if err != nil {
		t.Fatalf("TLS handshake with cert-manager's CA: %v", err)
	}
	if want, _ := certSerial(secret.Data["tls.crt"]); want == nil || served.SerialNumber.Cmp(want) != 0 {
		t.Errorf("served serial %v, cert-manager's tls.crt %v", served.SerialNumber, want)
	}
	if err := r.waitDenied(ctx, "default", chartHostNetworkPod, "host-network", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := r.waitAdmitted(ctx, "team-a", chartHostPortPod(8080), 10*time.Second); err != nil {
		t.Errorf("team-a's granted hostPort: %v", err)
	}
}
