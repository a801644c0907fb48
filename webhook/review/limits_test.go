package review

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portreeve/portreeve/policies"
)

func TestLimits(t *testing.T) {
	podWith := func(containers, portsEach int, port string) string {
		var cs []string
		for i := range containers {
			var ps []string
			for j := range portsEach {
				ps = append(ps, fmt.Sprintf(`{"containerPort":%d,"hostPort":%s}`, 1000+j, strings.ReplaceAll(port, "N", fmt.Sprint(1000+j))))
			}
			cs = append(cs, fmt.Sprintf(`{"name":"c%d","image":"x","ports":[%s]}`, i, strings.Join(ps, ",")))
		}
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[` + strings.Join(cs, ",") + `]}}`
	}
	serviceWith := func(n int, port string) string {
		var ps []string
		for i := range n {
			ps = append(ps, fmt.Sprintf(`{"name":"p%d","port":%s}`, i, strings.ReplaceAll(port, "N", fmt.Sprint(1+i))))
		}
		return `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[` + strings.Join(ps, ",") + `]}}`
	}
	ingressWith := func(rules, pathsEach int) string {
		var rs []string
		for i := range rules {
			var ps []string
			for j := range pathsEach {
				ps = append(ps, fmt.Sprintf(`{"path":"/%d","pathType":"Prefix","backend":{"service":{"name":"s","port":{"number":80}}}}`, j))
			}
			rs = append(rs, fmt.Sprintf(`{"host":"h%d.example.com","http":{"paths":[%s]}}`, i, strings.Join(ps, ",")))
		}
		return `{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"i"},"spec":{"rules":[` + strings.Join(rs, ",") + `]}}`
	}
	pod := policies.GroupVersionKind{Version: "v1", Kind: "Pod"}
	svc := policies.GroupVersionKind{Version: "v1", Kind: "Service"}
	ing := policies.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}
	small := Limits{Containers: 4, Ports: 8, IngressRules: 3, IngressPaths: 5}
	tests := []struct {
		name   string
		limits Limits
		kind   policies.GroupVersionKind
		object string
		want   string // "" allowed past the limits; else a substring of the error
		limit  bool   // a LimitError (else a bad request)
	}{
		{"a pod within the limits", small, pod, podWith(4, 2, "N"), "", false},
		{"too many containers", small, pod, podWith(5, 0, "N"), "5 containers, more than the 4 Portreeve reviews in one object (serve --max-containers)", true},
		{"too many ports", small, pod, podWith(3, 3, "N"), "9 ports, more than the 8", true},
		{"65,000 ports are counted no further than needed", small, pod, podWith(1, 2000, "N"), "more than the 8 Portreeve reviews in one object (serve --max-ports)", true},
		{"no limits", Limits{}, pod, podWith(10, 100, "N"), "", false},
		{"a hostPort that is a string", small, pod, podWith(1, 1, `"N"`), `spec.containers[0].ports[0].hostPort: expected an integer, got the string "1000"`, false},
		{"a hostPort that is a fraction", small, pod, podWith(1, 1, "N.5"), `spec.containers[0].ports[0].hostPort: expected an integer, got the number 1000.5`, false},
		{"containers that are not a list", small, pod, `{"apiVersion":"v1","kind":"Pod","spec":{"containers":{"a":1}}}`, "spec.containers: expected a list, got an object", false},
		{"a Service within the limits", small, svc, serviceWith(8, "N"), "", false},
		{"a Service with too many ports", small, svc, serviceWith(9, "N"), "9 ports", true},
		{"a Service port that is a string", small, svc, serviceWith(1, `"N"`), `spec.ports[0].port: expected an integer, got the string "1"`, false},
		{"an Ingress within the limits", small, ing, ingressWith(3, 1), "", false},
		{"an Ingress with too many rules", small, ing, ingressWith(4, 1), "4 rules and TLS hosts", true},
		{"an Ingress with too many paths", small, ing, ingressWith(2, 3), "6 paths, more than the 5 Portreeve reviews in one object (serve --max-ingress-paths)", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReviewer(t, "")
			r.SetLimits(tc.limits)
			req := &Request{Operation: "CREATE", Kind: tc.kind, Namespace: "default", Object: []byte(tc.object), User: anonymous}
			_, err := r.Validate(t.Context(), req)
			_, merr := r.Mutate(t.Context(), req)
			if tc.want == "" {
				if IsLimit(err) || IsBadRequest(err) || IsLimit(merr) || IsBadRequest(merr) {
					t.Fatalf("refused: %v / %v", err, merr)
				}
				return
			}
			for _, e := range []error{err, merr} {
				if e == nil || !strings.Contains(e.Error(), tc.want) || IsLimit(e) != tc.limit || IsBadRequest(e) == tc.limit {
					t.Fatalf("error %v (limit %v), want %q (limit %v)", e, IsLimit(e), tc.want, tc.limit)
				}
			}
		})
	}
}
