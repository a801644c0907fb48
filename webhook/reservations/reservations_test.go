package reservations

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/inventory"
	"github.com/portreeve/portreeve/webhook/review"
)

// leaseServer stands for the apiserver's Leases: creates fail when the name
// exists, updates and deletes when the resource version is not the stored
// one, as etcd's compare-and-swap makes them.
type leaseServer struct {
	mu     sync.Mutex
	leases map[string]*coordinationv1.Lease
	rv     int
	// fail, when set, is returned by every call.
	fail error
}

func newLeaseServer() (*leaseServer, *fake.Clientset) {
	s := &leaseServer{leases: map[string]*coordinationv1.Lease{}}
	cs := fake.NewClientset()
	cs.PrependReactor("*", "leases", s.react)
	return s, cs
}

func (s *leaseServer) react(a k8stesting.Action) (bool, runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return true, nil, s.fail
	}
	gr := coordinationv1.Resource("leases")
	switch a.GetVerb() {
	case "get":
		a := a.(k8stesting.GetAction)
		l, ok := s.leases[a.GetName()]
		if !ok {
			return true, nil, apierrors.NewNotFound(gr, a.GetName())
		}
		return true, l.DeepCopy(), nil
	case "create":
		l := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		if _, ok := s.leases[l.Name]; ok {
			return true, nil, apierrors.NewAlreadyExists(gr, l.Name)
		}
		s.rv++
		l.ResourceVersion = strconv.Itoa(s.rv)
		s.leases[l.Name] = l
		return true, l.DeepCopy(), nil
	case "update":
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		old, ok := s.leases[l.Name]
		if !ok {
			return true, nil, apierrors.NewNotFound(gr, l.Name)
		}
		if old.ResourceVersion != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(gr, l.Name, fmt.Errorf("the object has been modified"))
		}
		s.rv++
		l.ResourceVersion = strconv.Itoa(s.rv)
		s.leases[l.Name] = l
		return true, l.DeepCopy(), nil
	case "delete":
		a := a.(k8stesting.DeleteAction)
		old, ok := s.leases[a.GetName()]
		if !ok {
			return true, nil, apierrors.NewNotFound(gr, a.GetName())
		}
		if p := a.GetDeleteOptions().Preconditions; p != nil && p.ResourceVersion != nil && *p.ResourceVersion != old.ResourceVersion {
			return true, nil, apierrors.NewConflict(gr, old.Name, fmt.Errorf("precondition failed"))
		}
		delete(s.leases, a.GetName())
		return true, nil, nil
	case "list":
		sel := a.(k8stesting.ListAction).GetListRestrictions().Labels
		list := &coordinationv1.LeaseList{}
		for _, l := range s.leases {
			if sel.Matches(labels.Set(l.Labels)) {
				list.Items = append(list.Items, *l.DeepCopy())
			}
		}
		return true, list, nil
	}
	return false, nil, nil
}

func (s *leaseServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.leases)
}

const config = `apiVersion: portreeve.io/v1alpha1
kind: PolicyConfig
grants:
  - {name: teams, namespaces: [team-a, team-b], hostPorts: ["9100"], nodePorts: ["30000-32767"], ingressDomains: ["*.example.com"]}
`

// replica is one Portreeve: its inventory, reviewer and store.
type replica struct {
	inv      *inventory.Inventory
	reviewer *review.Reviewer
	store    *Store
}

func newReplica(t *testing.T, cs *fake.Clientset, name string, now func() time.Time) *replica {
	t.Helper()
	cfg, err := policies.ParseConfig([]byte(config), nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policies.New(t.Context(), policies.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	inv := inventory.New(inventory.Options{Now: now})
	inv.MarkSynced()
	r := review.NewReviewer(e)
	r.UseFacts(inv)
	store := New(Options{Leases: cs.CoordinationV1(), Namespace: "portreeve", Prefix: "portreeve-rsv", Replica: name, Local: inv, Now: now})
	r.UseReservations(store)
	return &replica{inv: inv, reviewer: r, store: store}
}

var (
	podKind     = policies.GroupVersionKind{Version: "v1", Kind: "Pod"}
	serviceKind = policies.GroupVersionKind{Version: "v1", Kind: "Service"}
	ingressKind = policies.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}
)

func request(t *testing.T, kind policies.GroupVersionKind, ns, obj string) *review.Request {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(obj))
	if err != nil {
		t.Fatal(err)
	}
	return &review.Request{Operation: "CREATE", Kind: kind, Namespace: ns, Object: raw, User: policies.User{Username: "alice"}}
}

func podOn(name, node string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec:\n  nodeName: " + node +
		"\n  containers: [{name: c, image: x, ports: [{containerPort: 9100, hostPort: 9100}]}]\n"
}

func nodePortService(name string, port int) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec: {type: NodePort, ports: [{port: 80, nodePort: %d}]}\n", name, port)
}

func ingressFor(name, host string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: " + name + "}\nspec:\n  rules:\n  - host: \"" + host +
		"\"\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}\n"
}

// TestTwoReplicasAgree: two replicas with inventories of their own (no
// informer shows anything) judge pairs of conflicting requests at the same
// moment, one of each pair each: exactly one of every pair is admitted, and
// the loser's denial names the winner.
func TestTwoReplicasAgree(t *testing.T) {
	_, cs := newLeaseServer()
	a := newReplica(t, cs, "a", time.Now)
	b := newReplica(t, cs, "b", time.Now)
	type pair struct {
		kind       policies.GroupVersionKind
		objA, objB string
	}
	var pairs []pair
	for i := range 40 {
		pairs = append(pairs,
			pair{podKind, podOn(fmt.Sprintf("pa%d", i), fmt.Sprintf("n%d", i)), podOn(fmt.Sprintf("pb%d", i), fmt.Sprintf("n%d", i))},
			pair{serviceKind, nodePortService(fmt.Sprintf("sa%d", i), 30000+i), nodePortService(fmt.Sprintf("sb%d", i), 30000+i)},
			pair{ingressKind, ingressFor(fmt.Sprintf("ia%d", i), fmt.Sprintf("h%d.example.com", i)), ingressFor(fmt.Sprintf("ib%d", i), fmt.Sprintf("h%d.example.com", i))},
		)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, p := range pairs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var ds [2]*policies.Decision
			var errs [2]error
			var both sync.WaitGroup
			for i, r := range []*replica{a, b} {
				ns, obj := "team-a", p.objA
				if i == 1 {
					ns, obj = "team-b", p.objB
				}
				both.Go(func() { ds[i], errs[i] = r.reviewer.Validate(context.Background(), request(t, p.kind, ns, obj)) })
			}
			both.Wait()
			for _, err := range errs {
				if err != nil {
					t.Errorf("%s: %v", p.kind.Kind, err)
					return
				}
			}
			if ds[0].Allowed() == ds[1].Allowed() {
				t.Errorf("%s pair %q / %q: admitted %v and %v, want exactly one", p.kind.Kind, firstLine(p.objA), firstLine(p.objB), ds[0].Allowed(), ds[1].Allowed())
				return
			}
			loser := ds[0]
			if loser.Allowed() {
				loser = ds[1]
			}
			if msg := loser.Violations[0].String(); !strings.Contains(msg, "-conflicts:") || !strings.Contains(msg, "admitted moments ago") {
				t.Errorf("denial: %s", msg)
			}
		})
	}
	wg.Wait()
}

// TestWildcardAgainstExactHost: a wildcard host and an exact host below it
// reserve different Leases; each writes its own before it reads the other's,
// so of two racing requests at least one sees the other and they are never
// both admitted. When both write before either reads, both see each other
// and both are refused (the safe side; the client's retry then wins), so
// the race asserts at most one, and every refusal names the other request.
func TestWildcardAgainstExactHost(t *testing.T) {
	_, cs := newLeaseServer()
	a := newReplica(t, cs, "a", time.Now)
	b := newReplica(t, cs, "b", time.Now)
	for i := range 20 {
		domain := fmt.Sprintf("w%d.example.com", i)
		var ds [2]*policies.Decision
		var errs [2]error
		var both sync.WaitGroup
		both.Go(func() {
			ds[0], errs[0] = a.reviewer.Validate(t.Context(), request(t, ingressKind, "team-a", ingressFor("wild", "*."+domain)))
		})
		both.Go(func() {
			ds[1], errs[1] = b.reviewer.Validate(t.Context(), request(t, ingressKind, "team-b", ingressFor("exact", "x."+domain)))
		})
		both.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if ds[0].Allowed() && ds[1].Allowed() {
			t.Errorf("%s: the wildcard and the exact host were both admitted", domain)
		}
		for _, d := range ds {
			if d.Allowed() {
				continue
			}
			if msg := d.Violations[0].String(); !strings.Contains(msg, "-conflicts:") || !strings.Contains(msg, "admitted moments ago") {
				t.Errorf("%s: denial: %s", domain, msg)
			}
		}
	}
}

func firstLine(obj string) string {
	_, rest, _ := strings.Cut(obj, "metadata: ")
	line, _, _ := strings.Cut(rest, "\n")
	return line
}

// TestReservationFailureRefuses: when the apiserver refuses the reservation,
// the request is refused with a message that says so, never admitted unseen.
func TestReservationFailureRefuses(t *testing.T) {
	srv, cs := newLeaseServer()
	a := newReplica(t, cs, "a", time.Now)
	srv.fail = apierrors.NewForbidden(coordinationv1.Resource("leases"), "x", fmt.Errorf("RBAC"))
	_, err := a.reviewer.Validate(t.Context(), request(t, podKind, "team-a", podOn("p", "n1")))
	if err == nil || !strings.Contains(err.Error(), "could not reserve hostPort TCP/9100 in the cluster") {
		t.Fatalf("error %v, want the reservation's", err)
	}
	// A request that claims nothing contested pays nothing.
	d, err := a.reviewer.Validate(t.Context(), request(t, podKind, "team-a", "apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec: {containers: [{name: c, image: x}]}\n"))
	if err != nil || !d.Allowed() {
		t.Fatalf("plain pod: %v %+v", err, d)
	}
}

// TestRefusedRequestWithdraws: a request judged again and refused withdraws
// what it had reserved under its other keys.
func TestRefusedRequestWithdraws(t *testing.T) {
	srv, cs := newLeaseServer()
	a := newReplica(t, cs, "a", time.Now)
	b := newReplica(t, cs, "b", time.Now)
	two := func(name, second string) string {
		return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 30001}, {port: 81, nodePort: " + second + "}]}\n"
	}
	if d, err := a.reviewer.Validate(t.Context(), request(t, serviceKind, "team-a", nodePortService("first", 30002))); err != nil || !d.Allowed() {
		t.Fatalf("first: %v %+v", err, d)
	}
	// b reserves 30001, then learns a's 30002, is judged again and refused.
	d, err := b.reviewer.Validate(t.Context(), request(t, serviceKind, "team-b", two("second", "30002")))
	if err != nil || d.Allowed() {
		t.Fatalf("second: %v %+v", err, d)
	}
	srv.mu.Lock()
	held := srv.leases["portreeve-rsv-np-30001"].Annotations[Annotation]
	srv.mu.Unlock()
	if strings.Contains(held, `"second"`) {
		t.Errorf("the refused request's reservation of 30001 is still there: %s", held)
	}
}

// TestClean: Leases whose entries all expired or settled are deleted; live
// ones stay.
func TestClean(t *testing.T) {
	srv, cs := newLeaseServer()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := newReplica(t, cs, "a", clock)
	for i, node := range []string{"n1", "n2"} {
		if d, err := a.reviewer.Validate(t.Context(), request(t, podKind, "team-a", podOn(fmt.Sprintf("p%d", i), node))); err != nil || !d.Allowed() {
			t.Fatalf("%v %+v", err, d)
		}
	}
	if d, err := a.reviewer.Validate(t.Context(), request(t, serviceKind, "team-a", nodePortService("s", 30005))); err != nil || !d.Allowed() {
		t.Fatalf("%v %+v", err, d)
	}
	if n := srv.count(); n != 2 {
		t.Fatalf("%d Leases, want 2 (hostPort 9100, nodePort 30005)", n)
	}
	left, err := a.store.Clean(t.Context())
	if err != nil || left != 2 {
		t.Fatalf("clean right away: left %d, %v; want 2", left, err)
	}
	now = now.Add(DefaultTTL + time.Second)
	left, err = a.store.Clean(t.Context())
	if err != nil || left != 0 || srv.count() != 0 {
		t.Fatalf("clean after the TTL: left %d (%d stored), %v; want none", left, srv.count(), err)
	}
}
