package review

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// gateFacts is a facts source that counts the reviews inside their facts at
// once and, with barrier > 0, holds each one until that many are inside (or a
// second passes).
type gateFacts struct {
	mu                sync.Mutex
	cond              *sync.Cond
	active, maxActive int
	barrier           int
	claims            int // claims and releases: what denied and admitted requests record
}

func newGateFacts(barrier int) *gateFacts {
	g := &gateFacts{barrier: barrier}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *gateFacts) Facts(*policies.Input, *policies.Config) *policies.Facts {
	g.mu.Lock()
	g.active++
	g.maxActive = max(g.maxActive, g.active)
	g.cond.Broadcast()
	deadline := time.Now().Add(time.Second)
	for g.barrier > 0 && g.active < g.barrier && time.Now().Before(deadline) {
		g.mu.Unlock()
		time.Sleep(time.Millisecond)
		g.mu.Lock()
	}
	if g.barrier == 0 {
		g.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // long enough for another review to enter, if it may
		g.mu.Lock()
	}
	g.active--
	g.mu.Unlock()
	return &policies.Facts{Ready: true}
}

func (g *gateFacts) Claim(*policies.Input, bool) {
	g.mu.Lock()
	g.claims++
	g.mu.Unlock()
}

func (g *gateFacts) Release(*policies.Input) { g.Claim(nil, false) }

// TestReviewsRunInParallelUnlessTheyContestAKey: recording reviews hold only
// the keys they contest, so reviews of different hostPorts, and reviews that
// contest nothing, overlap, while reviews of one hostPort, of node ports or of
// Ingresses take turns.
func TestReviewsRunInParallelUnlessTheyContestAKey(t *testing.T) {
	pod := func(i, port int) []byte {
		return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p%d"},"spec":{"containers":[{"name":"c","ports":[{"containerPort":80,"hostPort":%d}]}]}}`, i, port)
	}
	plainPod := func(i, _ int) []byte {
		return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p%d"},"spec":{"containers":[{"name":"c"}]}}`, i)
	}
	nodePort := func(i, _ int) []byte {
		return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s%d"},"spec":{"type":"NodePort","ports":[{"port":80}]}}`, i)
	}
	ingress := func(i, _ int) []byte {
		return fmt.Appendf(nil, `{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"i%d"},"spec":{"rules":[{"host":"h%d.example.com"}]}}`, i, i)
	}
	podKind := policies.GroupVersionKind{Version: "v1", Kind: "Pod"}
	tests := []struct {
		name     string
		kind     policies.GroupVersionKind
		object   func(i, port int) []byte
		samePort bool
		parallel bool
	}{
		{"different hostPorts", podKind, pod, false, true},
		{"no hostPort", podKind, plainPod, false, true},
		{"one hostPort", podKind, pod, true, false},
		{"node ports", policies.GroupVersionKind{Version: "v1", Kind: "Service"}, nodePort, false, false},
		{"Ingresses", policies.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}, ingress, false, false},
	}
	const n = 4
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReviewer(t, "")
			barrier := 0
			if tc.parallel {
				barrier = n
			}
			g := newGateFacts(barrier)
			r.UseFacts(g)
			var wg sync.WaitGroup
			for i := range n {
				port := 8000 + i
				if tc.samePort {
					port = 8000
				}
				wg.Go(func() {
					req := &Request{Operation: "CREATE", Kind: tc.kind, Namespace: "default", Object: tc.object(i, port), User: anonymous}
					if _, err := r.Validate(t.Context(), req); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			switch {
			case tc.parallel && g.maxActive != n:
				t.Errorf("at most %d of %d reviews were inside their facts at once, want all: they do not contest a key", g.maxActive, n)
			case !tc.parallel && g.maxActive != 1:
				t.Errorf("%d reviews were inside their facts at once: they contest a key", g.maxActive)
			}
			if g.claims != n {
				t.Errorf("%d claims or releases recorded, want %d", g.claims, n)
			}
		})
	}
}

func TestKeyedMutexReleasesItsKeys(t *testing.T) {
	var k keyedMutex
	unlock := k.lock([]string{"b", "a", "b"})
	done := make(chan struct{})
	go func() { k.lock([]string{"a"})(); close(done) }()
	select {
	case <-done:
		t.Fatal("a held key was taken")
	case <-time.After(20 * time.Millisecond):
	}
	unlock()
	<-done
	if len(k.locks) != 0 {
		t.Errorf("keys left: %v", k.locks)
	}
}
