package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// blocker is a handler whose reviews run until they are let go.
type blocker struct {
	entered chan string // the uid of each review that starts
	mu      sync.Mutex
	gates   map[string]chan struct{}
}

func newBlocker() *blocker {
	return &blocker{entered: make(chan string, 16), gates: map[string]chan struct{}{}}
}

func (b *blocker) gate(uid string) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gateLocked(uid)
}

func (b *blocker) gateLocked(uid string) chan struct{} {
	g, ok := b.gates[uid]
	if !ok {
		g = make(chan struct{})
		b.gates[uid] = g
	}
	return g
}

// finish lets the review uid end (before or after it started; once).
func (b *blocker) finish(uid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.gateLocked(uid)
	select {
	case <-g:
	default:
		close(g)
	}
}

func (b *blocker) Handle(_ context.Context, req admission.Request) admission.Response {
	b.entered <- string(req.UID)
	<-b.gate(string(req.UID))
	return admission.Allowed("reviewed")
}

func uidRequest(uid string) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: types.UID(uid)}}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
	}
}

func TestInFlight(t *testing.T) {
	const reserve = inFlightReserve
	tests := []inFlightCase{
		{name: "a free slot: reviewed at once", max: 2, occupied: 1, deadline: time.Second, reviewed: true},
		{name: "queued until a review in flight ends", max: 1, deadline: 2 * time.Second, freeIn: 100 * time.Millisecond,
			reviewed: true, wait: 100 * time.Millisecond},
		{name: "no review ends: answered when only the reserve is left", max: 1, deadline: 700 * time.Millisecond,
			wait: 700*time.Millisecond - reserve, message: "1 reviews were in flight (serve --max-reviews-in-flight) and none ended within"},
		{name: "a review that ends too late does not help", max: 1, deadline: 700 * time.Millisecond, freeIn: 600 * time.Millisecond,
			wait: 700*time.Millisecond - reserve, message: "while the request's deadline still left time to review it"},
		{name: "a deadline closer than the reserve: answered at once", max: 1, deadline: reserve / 2,
			message: "the request's deadline left no time to wait for one to end"},
		{name: "no deadline: waits the no-deadline bound", max: 1, wait: 200 * time.Millisecond, message: "none ended within"},
		{name: "the client went away", max: 1, deadline: 2 * time.Second, cancel: true, message: "none ended within"},
		{name: "observing: allowed with a warning", max: 1, deadline: 700 * time.Millisecond, observe: true,
			wait: 700*time.Millisecond - reserve, message: "portreeve would deny (enforcement: observe): portreeve: not reviewed: 1 reviews were in flight"},
	}
	for _, tc := range tests {
		// With a bound on bytes that the reviews fit in, and without.
		for _, maxBytes := range []int64{0, 1 << 20} {
			t.Run(fmt.Sprintf("%s/max-bytes=%d", tc.name, maxBytes), func(t *testing.T) {
				t.Parallel()
				testInFlight(t, tc, maxBytes)
			})
		}
	}
}

type inFlightCase struct {
	name     string
	max      int
	occupied int           // reviews in flight when the one under test comes; default max
	deadline time.Duration // 0: none
	cancel   bool          // the client goes away at once
	observe  bool
	freeIn   time.Duration // a review in flight ends after this (0: none ends)
	// what the review under test gets
	reviewed bool
	wait     time.Duration // about how long it waited
	message  string
}

const inFlightReserve = 300 * time.Millisecond

func testInFlight(t *testing.T, tc inFlightCase, maxBytes int64) {
	const (
		reserve = inFlightReserve
		// slack bounds how late an answer may come on a busy machine: a
		// correctness margin (the review must not hang), not a speed target.
		slack = 250 * time.Millisecond
	)
	reg := prometheus.NewRegistry()
	l, err := NewInFlight(InFlightOptions{Max: tc.max, MaxBytes: maxBytes, Reserve: reserve, NoDeadlineWait: 200 * time.Millisecond,
		Observe: func() bool { return tc.observe }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	b := newBlocker()
	h := l.Wrap("validating", b)
	occupied := tc.occupied
	if occupied == 0 {
		occupied = tc.max
	}
	for i := range occupied {
		uid := fmt.Sprintf("busy%d", i) // busy0 is the one that may end
		go h.Handle(context.Background(), sizedRequest(uid, 100, 0))
		<-b.entered
		if i > 0 || tc.freeIn == 0 {
			t.Cleanup(func() { b.finish(uid) })
		}
	}
	if f := testutil.ToFloat64(l.inFlight); f != float64(occupied) {
		t.Fatalf("portreeve_admission_reviews_in_flight = %v, want %d", f, occupied)
	}
	ctx := context.Background()
	if tc.deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, tc.deadline)
		defer cancel()
	}
	if tc.cancel {
		c, cancel := context.WithCancel(ctx)
		ctx = c
		time.AfterFunc(50*time.Millisecond, cancel)
	}
	if tc.freeIn > 0 {
		time.AfterFunc(tc.freeIn, func() { b.finish("busy0") })
	}
	b.finish("test") // once it runs, the review under test ends at once
	start := time.Now()
	got := h.Handle(ctx, sizedRequest("test", 100, 0))
	took := time.Since(start)

	if tc.reviewed {
		if !got.Allowed || got.Result.Message != "reviewed" {
			t.Fatalf("not reviewed: %+v", got.Result)
		}
	} else {
		msg := got.Result.Message
		if tc.observe {
			if !got.Allowed || len(got.Warnings) != 1 {
				t.Fatalf("observing: %+v %q, want allowed with one warning", got.Result, got.Warnings)
			}
			msg = got.Warnings[0]
		} else if got.Allowed || got.Result.Code != http.StatusServiceUnavailable {
			t.Fatalf("got %+v, want a 503", got.Result)
		}
		if !strings.Contains(msg, tc.message) || !strings.Contains(msg, "retry") {
			t.Fatalf("message %q, want %q", msg, tc.message)
		}
		if v := testutil.ToFloat64(l.timeouts.WithLabelValues("validating")); v != 1 {
			t.Errorf("portreeve_admission_queue_timeouts_total = %v", v)
		}
	}
	if took < tc.wait-20*time.Millisecond || took > tc.wait+slack && !tc.cancel || tc.cancel && took > 50*time.Millisecond+slack {
		t.Errorf("answered after %s, want about %s", took.Round(time.Millisecond), tc.wait)
	}
	if q := testutil.ToFloat64(l.queued); q != 0 {
		t.Errorf("portreeve_admission_reviews_queued = %v after the review", q)
	}
	// What was in flight still is, no more (a review refused took nothing).
	if running := l.Running(); running != occupied && !(tc.freeIn > 0 && running == occupied-1) {
		t.Errorf("%d reviews in flight after it, want %d", running, occupied)
	}
	if b := testutil.ToFloat64(l.bytesInFlight); maxBytes > 0 && b != float64(100*l.Running()) || maxBytes == 0 && b != 0 {
		t.Errorf("portreeve_admission_review_bytes_in_flight = %v with %d reviews of 100 bytes in flight", b, l.Running())
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 4 {
		t.Errorf("%d series registered (%v), want the three gauges and the counter", n, err)
	}
}

// TestInFlightQueueIsFirstComeFirstServed: the gauges count what runs and
// what waits, and the waiting reviews run in the order they came.
func TestInFlightQueueIsFirstComeFirstServed(t *testing.T) {
	l, err := NewInFlight(InFlightOptions{Max: 2, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	b := newBlocker()
	h := l.Wrap("mutating", b)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan admission.Response, 8)
	uids := []string{"a", "b", "c", "d", "e", "f"}
	for i, uid := range uids {
		go func() { done <- h.Handle(ctx, uidRequest(uid)) }()
		// Each one is in flight or in line before the next one comes.
		waitFor(t, uid+" arrives", func() bool {
			return testutil.ToFloat64(l.inFlight)+testutil.ToFloat64(l.queued) == float64(i+1)
		})
	}
	if f, q := testutil.ToFloat64(l.inFlight), testutil.ToFloat64(l.queued); f != 2 || q != 4 {
		t.Fatalf("in flight %v, queued %v; want 2 and 4", f, q)
	}
	var order []string
	for range 2 {
		order = append(order, <-b.entered)
	}
	for len(order) < len(uids) {
		b.finish(order[len(order)-2]) // the older of the two in flight ends
		order = append(order, <-b.entered)
	}
	for _, uid := range uids {
		b.finish(uid)
	}
	for range uids {
		if r := <-done; !r.Allowed {
			t.Fatalf("%+v", r.Result)
		}
	}
	if got := strings.Join(order, ""); got != "abcdef" && got != "bacdef" {
		t.Errorf("ran in the order %s, want the order of arrival", got)
	}
	if f, q := testutil.ToFloat64(l.inFlight), testutil.ToFloat64(l.queued); f != 0 || q != 0 {
		t.Errorf("in flight %v, queued %v after all ended", f, q)
	}
	if _, err := NewInFlight(InFlightOptions{Max: 0}); err == nil {
		t.Error("a bound of 0 was accepted")
	}
}

// TestInFlightThroughTheServer: as serve mounts it (WithRequestDeadline
// around the admission webhook), a review that cannot get its turn is
// answered before the apiserver's ?timeout= with an AdmissionReview that
// carries its uid, which the apiserver needs to read the answer.
func TestInFlightThroughTheServer(t *testing.T) {
	l, err := NewInFlight(InFlightOptions{Max: 1, Reserve: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b := newBlocker()
	srv := WithRequestDeadline(NewEndpoint(l.Wrap("validating", b), logr.Discard()), 100*time.Millisecond)
	post := func(uid string) (*httptest.ResponseRecorder, time.Duration) {
		body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid + `","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE"}}`
		req := httptest.NewRequest(http.MethodPost, "/validate?timeout=1s", bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		start := time.Now()
		srv.ServeHTTP(rec, req)
		return rec, time.Since(start)
	}
	go post("first")
	<-b.entered
	defer b.finish("first")
	rec, took := post("second")
	var out admissionv1.AdmissionReview
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.Response == nil {
		t.Fatalf("%d %s", rec.Code, rec.Body.Bytes())
	}
	r := out.Response
	if r.UID != "second" || r.Allowed || r.Result.Code != http.StatusServiceUnavailable || !strings.Contains(r.Result.Message, "not reviewed") {
		t.Fatalf("answer %+v %+v, want a 503 with the uid", r, r.Result)
	}
	// 1s timeout - 100ms margin - 200ms reserve: answered after about 700ms, well before the apiserver gives up.
	if took < 650*time.Millisecond || took > 950*time.Millisecond {
		t.Errorf("answered after %s, want about 700ms (and before the 1s timeout)", took.Round(time.Millisecond))
	}
	t.Logf("answered after %s: %s", took.Round(time.Millisecond), r.Result.Message)
}

func sizedRequest(uid string, object, oldObject int) admission.Request {
	r := uidRequest(uid)
	r.Object.Raw = bytes.Repeat([]byte("x"), object)
	if oldObject > 0 {
		r.OldObject.Raw = bytes.Repeat([]byte("x"), oldObject)
	}
	return r
}

// TestInFlightBytes: the objects of the reviews in flight are bounded
// together; a large review waits for room while a small one passes it, and
// one larger than the bound still runs, beside small ones.
func TestInFlightBytes(t *testing.T) {
	const maxBytes = 1000
	tests := []struct {
		name string
		// running are the sizes (object, old object) of the reviews in flight, in order
		running [][2]int
		// the review under test
		size     [2]int
		reviewed bool
		weight   float64 // the bytes in flight it adds while it runs
	}{
		{"room left", [][2]int{{400, 0}}, [2]int{300, 300}, true, 600},
		{"object and old object count together", [][2]int{{400, 0}}, [2]int{300, 400}, false, 0},
		{"a small one passes a large one that waits", [][2]int{{600, 0}, {600, 0}}, [2]int{100, 0}, true, 100},
		{"larger than the bound: counts three quarters, runs alone", nil, [2]int{5000, 5000}, true, 750},
		{"larger than the bound: small ones still pass", [][2]int{{5000, 0}}, [2]int{200, 0}, true, 200},
		{"larger than the bound: waits for other large ones", [][2]int{{300, 0}}, [2]int{5000, 0}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, err := NewInFlight(InFlightOptions{Max: 10, MaxBytes: maxBytes, Reserve: 100 * time.Millisecond, Registerer: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			b := newBlocker()
			h := l.Wrap("validating", b)
			var want float64
			for i, s := range tc.running {
				uid := fmt.Sprintf("running%d", i)
				t.Cleanup(func() { b.finish(uid) })
				go h.Handle(context.Background(), sizedRequest(uid, s[0], s[1]))
				if i == 0 || want+float64(min(s[0]+s[1], 750)) <= maxBytes {
					<-b.entered
					want += float64(min(s[0]+s[1], 750))
				} else { // it waits for room
					waitFor(t, uid+" queued", func() bool { return testutil.ToFloat64(l.queued) == 1 })
				}
			}
			if got := testutil.ToFloat64(l.bytesInFlight); got != want {
				t.Fatalf("portreeve_admission_review_bytes_in_flight = %v, want %v", got, want)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
			defer cancel()
			done := make(chan admission.Response, 1)
			go func() { done <- h.Handle(ctx, sizedRequest("test", tc.size[0], tc.size[1])) }()
			if tc.reviewed {
				if uid := <-b.entered; uid != "test" {
					t.Fatalf("%s ran", uid)
				}
				if got := testutil.ToFloat64(l.bytesInFlight); got != want+tc.weight {
					t.Errorf("portreeve_admission_review_bytes_in_flight = %v while it runs, want %v", got, want+tc.weight)
				}
				b.finish("test")
				if r := <-done; !r.Allowed {
					t.Fatalf("%+v", r.Result)
				}
			} else {
				r := <-done
				if r.Allowed || r.Result.Code != http.StatusServiceUnavailable ||
					!strings.Contains(r.Result.Message, "within the 1000 bytes Portreeve reviews at once (serve --max-review-bytes-in-flight)") {
					t.Fatalf("%+v, want a 503 naming the bound on bytes", r.Result)
				}
			}
			if got := testutil.ToFloat64(l.bytesInFlight); got != want {
				t.Errorf("portreeve_admission_review_bytes_in_flight = %v after it, want %v", got, want)
			}
		})
	}
}
