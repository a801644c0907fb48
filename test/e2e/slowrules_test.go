package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portreeve/portreeve/test/controlplane"
	"github.com/portreeve/portreeve/test/harness"
)

// slowRulesConfig grants team-a hostPorts, so that only the custom rules
// stand between its hostPort pods and admission.
const slowRulesConfig = `
apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - name: system
    namespaces: [kube-system]
    hostNetwork: true
    hostPorts: ["1-65535"]
  - name: team-a
    namespaces: [team-a]
    hostPorts: ["8000-8099"]
`

// slowRule is custom rule slow<n> of the reproduction of a slow review: on
// every object it loops far longer than any budget before it decides.
func slowRule(n int, failurePolicy string) string {
	return fmt.Sprintf(`# METADATA
# custom:
#   mode: deny
#   failurePolicy: %s
package portreeve.rules.slow%d

deny contains {"msg": "never"} if {
	some a in numbers.range(1, 4000)
	some b in numbers.range(1, 4000)
	a * b == -1
}
`, failurePolicy, n)
}

func hostPortPod(name string, port int32) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "registry.example/app:1",
			Ports: []corev1.ContainerPort{{ContainerPort: port, HostPort: port}},
		}}},
	}
}

// TestSlowRulesThroughTheAPIServer: through the real apiserver, with the
// chart's webhook configurations (timeoutSeconds 5),
//
//   - ten slow custom rules (which once took (10+1) x the budget, 5.5 s, so
//     that every exposure request failed with "context deadline exceeded")
//     give an exposure request their failure policy's answer, a denial naming
//     each of them, well within the webhook timeout; and
//     portreeve_rule_timeouts_total counts each;
//   - with one slow rule (failing open), eight pods created at once (which
//     once finished at 1, 2, ... 8 s) are all admitted within 1.5 x the
//     evaluation budget: their reviews run side by side.
//
// The budget is --policy-eval-timeout=1s, twice the default, so that the
// apiserver's own time for a create fits the 0.5 x margin of the second
// part on a loaded machine; one review at a time would take 8 s.
func TestSlowRulesThroughTheAPIServer(t *testing.T) {
	const (
		budget         = time.Second
		webhookTimeout = 5 * time.Second // the chart's timeoutSeconds
		slowRules      = 10
		concurrent     = 8
	)
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := t.Context()
	for _, ns := range []string{"default", "kube-system", "team-a", harness.Namespace} {
		if err := cp.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	policyDir := &authoringPolicyDir{dir: t.TempDir()}
	ten := map[string]string{}
	for i := range slowRules {
		ten[fmt.Sprintf("slow%d.rego", i)] = slowRule(i, "deny")
	}
	policyDir.set(t, ten)
	p := harness.StartForTest(t, cp, harness.Options{
		Config:    slowRulesConfig,
		ExtraArgs: []string{"--policy-dir", policyDir.dir, "--policy-eval-timeout", budget.String()},
	})
	timeouts := func() map[string]float64 {
		out := map[string]float64{}
		for i := range slowRules {
			rule := fmt.Sprintf("slow%d", i)
			out[rule], _ = authoringMetric(t, p, `portreeve_rule_timeouts_total{rule="`+rule+`"}`)
		}
		return out
	}

	// 1. Ten slow rules: denied by their failure policy, in time.
	before := timeouts()
	for attempt := range 2 { // the first request finds them slow, the second knows them
		start := time.Now()
		_, err := cs.CoreV1().Pods("team-a").Create(ctx, hostPortPod("web", 8080), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		took := time.Since(start)
		if err == nil {
			t.Fatal("admitted: the slow rules' failure policy is deny")
		}
		msg := err.Error()
		if !strings.Contains(msg, `admission webhook "`) || !strings.Contains(msg, "denied the request") ||
			strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "failed calling webhook") {
			t.Fatalf("request %d: not the rules' answer: %s", attempt+1, msg)
		}
		for i := range slowRules {
			want := fmt.Sprintf("slow%d: the rule failed to evaluate and its failure policy is deny: evaluation time budget exceeded", i)
			if !strings.Contains(msg, want) {
				t.Fatalf("request %d: the denial lacks %q:\n%s", attempt+1, want, msg)
			}
		}
		t.Logf("request %d with ten slow rules denied by their failure policy after %s (webhook timeout %s, budget %s)",
			attempt+1, took.Round(time.Millisecond), webhookTimeout, budget)
		if took >= webhookTimeout {
			t.Errorf("request %d took %s, past the webhook timeout %s", attempt+1, took.Round(time.Millisecond), webhookTimeout)
		}
	}
	after := timeouts()
	for rule, n := range after {
		if n < before[rule]+2 {
			t.Errorf(`portreeve_rule_timeouts_total{rule=%q} went from %v to %v over two requests`, rule, before[rule], n)
		}
	}

	// 2. One slow rule that fails open: eight pods at once, each in its own
	// hostPort (reviews that contest a key take turns by design).
	policyDir.set(t, map[string]string{"slow0.rego": slowRule(0, "ignore")})
	authoringEventually(t, 30*time.Second, "the one slow rule serves", func() error {
		if v, _ := authoringMetric(t, p, "portreeve_policy_custom_modules"); v != 1 {
			return fmt.Errorf("portreeve_policy_custom_modules = %v", v)
		}
		_, err := cs.CoreV1().Pods("team-a").Create(ctx, hostPortPod("probe", 8099), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	})
	slowBefore, _ := authoringMetric(t, p, `portreeve_rule_timeouts_total{rule="slow0"}`)
	var (
		wg    sync.WaitGroup
		took  = make([]time.Duration, concurrent)
		errs  = make([]error, concurrent)
		start = time.Now()
	)
	for i := range concurrent {
		wg.Go(func() {
			_, errs[i] = cs.CoreV1().Pods("team-a").Create(ctx, hostPortPod(fmt.Sprintf("p%d", i), int32(8000+i)), metav1.CreateOptions{})
			took[i] = time.Since(start)
		})
	}
	// Meanwhile: how many reviews are in flight, and /readyz, which never waits for them.
	stop := make(chan struct{})
	var (
		watch       sync.WaitGroup
		maxInFlight float64
		slowReadyz  time.Duration
		readyzErr   error
	)
	inFlight := regexp.MustCompile(`(?m)^portreeve_admission_reviews_in_flight (\S+)$`)
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if page, err := p.Metrics(); err == nil {
				if m := inFlight.FindStringSubmatch(page); m != nil {
					v, _ := strconv.ParseFloat(m[1], 64)
					maxInFlight = max(maxInFlight, v)
				}
			}
			s := time.Now()
			resp, err := http.Get(p.HealthURL + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("/readyz: %s", resp.Status)
				}
			}
			if err != nil && readyzErr == nil {
				readyzErr = err
			}
			slowReadyz = max(slowReadyz, time.Since(s))
		}
	})
	wg.Wait()
	close(stop)
	watch.Wait()
	t.Logf("meanwhile: at most %v reviews in flight seen (portreeve_admission_reviews_in_flight), slowest /readyz %s",
		maxInFlight, slowReadyz.Round(time.Millisecond))
	if maxInFlight < 2 {
		t.Errorf("portreeve_admission_reviews_in_flight never showed two reviews at once (at most %v)", maxInFlight)
	}
	if readyzErr != nil || slowReadyz > time.Second {
		t.Errorf("/readyz while the reviews ran: %v, slowest %s", readyzErr, slowReadyz)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pod p%d: %v", i, err)
		}
	}
	slices.Sort(took)
	t.Logf("%d pods created at once with one slow rule, all admitted after %s (first %s; budget %s)",
		concurrent, took[concurrent-1].Round(time.Millisecond), took[0].Round(time.Millisecond), budget)
	if last := took[concurrent-1]; last > budget*3/2 {
		t.Errorf("the last of %d concurrent reviews finished after %s, past 1.5 x the budget (%s)", concurrent, last.Round(time.Millisecond), budget*3/2)
	}
	if slowAfter, _ := authoringMetric(t, p, `portreeve_rule_timeouts_total{rule="slow0"}`); slowAfter < slowBefore+concurrent {
		t.Errorf(`portreeve_rule_timeouts_total{rule="slow0"} went from %v to %v over %d reviews`, slowBefore, slowAfter, concurrent)
	}
}
