package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// DefaultNoDeadlineWait is how long a review without a deadline (a request
// without ?timeout=, which the apiserver always sends) may wait in the queue:
// the apiserver's default webhook timeout.
const DefaultNoDeadlineWait = 10 * time.Second

// InFlightOptions configure NewInFlight.
type InFlightOptions struct {
	// Max is the most reviews in flight at once (serve --max-reviews-in-flight); at least 1.
	Max int
	// MaxBytes bounds the objects of the reviews in flight together (object
	// and old object as received; serve --max-review-bytes-in-flight); 0: no
	// bound. A review counts at most three quarters of it: one larger than
	// that runs alone among large ones, and a quarter stays for small ones.
	MaxBytes int64
	// Reserve is the time a review needs once it runs (the rules' evaluation
	// budget, --policy-eval-timeout): a queued review gives up its place once
	// less than Reserve is left before its deadline, so that every review that
	// runs has its whole budget and none ends in "context deadline exceeded".
	Reserve time.Duration
	// NoDeadlineWait bounds the wait of a review whose context has no
	// deadline; zero means DefaultNoDeadlineWait.
	NoDeadlineWait time.Duration
	// Observe reports whether the installation only observes (may be nil:
	// enforcing). Its webhooks then fail open, and so does a review that could
	// not get its turn: it is allowed with a warning instead of refused.
	Observe func() bool
	// Registerer receives the gauges and the counter (nil: none registered).
	Registerer prometheus.Registerer
}

// InFlight bounds the reviews that run at once, across the webhooks it wraps,
// by number and by the size of their objects. Reviews are CPU work (decoding,
// facts, Rego): more of them at once than the process has CPUs for only makes
// each slower, until the rules run out of their time budget and every review
// fails together. And each holds its objects decoded while it runs, many
// times their size in JSON (a 2.5 MiB Pod with 65,000 ports takes 40 MB):
// six such at once took the process past the chart's 256Mi memory limit
// while small reviews waited. Beyond either bound a review waits: first come
// first served for a slot, and for as long as it takes others to make room
// for its bytes (a small review passes a large one that waits for room). It
// waits for as long as its deadline (WithRequestDeadline) leaves time to
// review it afterwards; then it is answered at once with a 503 that says so,
// in an AdmissionReview that carries its uid, as the failure policy would
// treat a webhook that did not answer: refused when enforcing, allowed with
// a warning when observing. It never hangs until the apiserver gives up.
//
// Only the reviews are bounded: the health and metrics endpoints are served
// by other servers and never wait here.
type InFlight struct {
	slots   chan struct{}
	bytes   *byteBudget // nil: no bound
	reserve time.Duration
	noWait  time.Duration
	observe func() bool

	inFlight      prometheus.Gauge
	bytesInFlight prometheus.Gauge
	queued        prometheus.Gauge
	timeouts      *prometheus.CounterVec
}

// NewInFlight creates the bounds and registers their metrics.
func NewInFlight(o InFlightOptions) (*InFlight, error) {
	if o.Max < 1 {
		return nil, fmt.Errorf("the bound on reviews in flight must be at least 1, got %d", o.Max)
	}
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("the bound on bytes in flight must be 0 (none) or more, got %d", o.MaxBytes)
	}
	if o.NoDeadlineWait <= 0 {
		o.NoDeadlineWait = DefaultNoDeadlineWait
	}
	l := &InFlight{
		slots:   make(chan struct{}, o.Max),
		reserve: max(o.Reserve, 0),
		noWait:  o.NoDeadlineWait,
		observe: o.Observe,
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_admission_reviews_in_flight",
			Help: "Reviews running now, across the webhooks (at most serve --max-reviews-in-flight).",
		}),
		bytesInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_admission_review_bytes_in_flight",
			Help: "Bytes of the objects of the reviews running now (at most serve --max-review-bytes-in-flight, or one review's).",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_admission_reviews_queued",
			Help: "Reviews waiting for their turn (--max-reviews-in-flight, --max-review-bytes-in-flight).",
		}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_admission_queue_timeouts_total",
			Help: "Reviews answered without being reviewed (503, or allowed with a warning when observing) because they did " +
				"not get their turn while their deadline still left time to review them, by webhook.",
		}, []string{"webhook"}),
	}
	if o.MaxBytes > 0 {
		l.bytes = &byteBudget{max: o.MaxBytes, freed: make(chan struct{})}
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{l.inFlight, l.bytesInFlight, l.queued, l.timeouts} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// Max is the bound on reviews in flight.
func (l *InFlight) Max() int { return cap(l.slots) }

// MaxBytes is the bound on their bytes (0: none).
func (l *InFlight) MaxBytes() int64 {
	if l.bytes == nil {
		return 0
	}
	return l.bytes.max
}

// Running is the number of reviews in flight now.
func (l *InFlight) Running() int { return len(l.slots) }

// Wrap bounds h; webhook names it in the metrics (validating, mutating, namespaces).
func (l *InFlight) Wrap(webhook string, h admission.Handler) admission.Handler {
	l.timeouts.WithLabelValues(webhook) // exported at 0 from the start
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		size := int64(len(req.Object.Raw) + len(req.OldObject.Raw))
		release, waited, full := l.acquire(ctx, size)
		if release == nil {
			return l.busy(ctx, webhook, waited, full, size)
		}
		defer release()
		return h.Handle(ctx, req)
	})
}

// acquire takes room for size bytes, then a slot, waiting while the
// review's time allows. It returns nil and which bound was full (slots or
// bytes) when the review did not get its turn.
func (l *InFlight) acquire(ctx context.Context, size int64) (release func(), waited time.Duration, full string) {
	weight := int64(0)
	if l.bytes != nil {
		weight = min(size, l.bytes.max-l.bytes.max/4)
	}
	start := time.Now()
	var timer *time.Timer
	// wait starts the clock of the first wait, once.
	wait := func() <-chan time.Time {
		if timer == nil {
			end := start.Add(l.noWait)
			if d, ok := ctx.Deadline(); ok {
				end = d.Add(-l.reserve)
			}
			timer = time.NewTimer(max(time.Until(end), 0))
			l.queued.Inc()
		}
		return timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
			l.queued.Dec()
		}
	}()
	if weight > 0 {
		if !l.bytes.acquire(ctx, weight, wait) {
			return nil, time.Since(start), "bytes"
		}
		l.bytesInFlight.Add(float64(weight))
	}
	slot := false
	select {
	case l.slots <- struct{}{}:
		slot = true
	default:
		// Senders blocked on a channel are served in the order they came.
		select {
		case l.slots <- struct{}{}:
			slot = true
		case <-wait():
		case <-ctx.Done():
		}
	}
	if !slot {
		l.releaseBytes(weight)
		return nil, time.Since(start), "slots"
	}
	l.inFlight.Inc()
	return func() {
		l.inFlight.Dec()
		<-l.slots
		l.releaseBytes(weight)
	}, time.Since(start), ""
}

func (l *InFlight) releaseBytes(weight int64) {
	if weight > 0 {
		l.bytesInFlight.Sub(float64(weight))
		l.bytes.release(weight)
	}
}

// busy is the answer to a review that did not get its turn in time.
func (l *InFlight) busy(ctx context.Context, webhook string, waited time.Duration, full string, size int64) admission.Response {
	l.timeouts.WithLabelValues(webhook).Inc()
	bound := fmt.Sprintf("%d reviews were in flight (serve --max-reviews-in-flight)", l.Max())
	if full == "bytes" {
		bound = fmt.Sprintf("the objects of the reviews in flight left no room for this one's %d bytes within the %d bytes Portreeve reviews at once (serve --max-review-bytes-in-flight)",
			size, l.bytes.max)
	}
	why := "none ended within " + waited.Round(time.Millisecond).String() + ", while the request's deadline still left time to review it"
	if waited < time.Millisecond {
		why = "the request's deadline left no time to wait for one to end"
	}
	msg := "portreeve: not reviewed: " + bound + " and " + why + "; retry, or give Portreeve more CPU or replicas"
	logf.FromContext(ctx).Info("not reviewed: too many reviews in flight", "bound", full, "maxInFlight", l.Max(),
		"maxBytesInFlight", l.MaxBytes(), "bytes", size, "waited", waited.String())
	if l.observe != nil && l.observe() {
		return admission.Allowed("").WithWarnings(wouldDeny(msg))
	}
	return admission.Errored(http.StatusServiceUnavailable, errors.New(msg))
}

// byteBudget bounds a sum of weights; a waiter that fits takes its room at
// once, even past a larger one that waits.
type byteBudget struct {
	max   int64
	mu    sync.Mutex
	used  int64
	freed chan struct{} // closed and replaced whenever room is given back
}

// acquire takes room for n (at most max), waiting on wait() or ctx.
func (b *byteBudget) acquire(ctx context.Context, n int64, wait func() <-chan time.Time) bool {
	for {
		b.mu.Lock()
		if b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return true
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-wait():
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
}
