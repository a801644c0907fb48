package review

import (
	"context"
	"errors"
	"time"

	"github.com/portreeve/portreeve/policies"
)

// Reservations publish what an admitted request claims in the cluster, so
// that Portreeve's other replicas see it before their informers show the
// object, and learn what they published (webhook/reservations).
type Reservations interface {
	// Reserve publishes in's claims under each contested key that cfg's
	// conflict rules enforce. learned is true when a key held other
	// replicas' reservations this replica did not know: they are now in its
	// inventory, and the request must be judged again (and reserved again).
	Reserve(ctx context.Context, in *policies.Input, cfg *policies.Config) (learned bool, err error)
	// Unreserve withdraws what Reserve published for in.
	Unreserve(ctx context.Context, in *policies.Input, cfg *policies.Config) error
}

// UseReservations makes the validating review reserve what it admits.
func (r *Reviewer) UseReservations(rs Reservations) { r.reservations = rs }

// maxJudgements bounds how often one request is judged again with what other
// replicas reserved: each round means another replica wrote one of its keys
// in between, which a handful of concurrent requests cannot do for long.
const maxJudgements = 4

// unreserveTimeout bounds the withdrawal of a refused request's reservations.
const unreserveTimeout = 5 * time.Second

// ErrReservationContended is returned when a request's keys kept changing
// under it.
var ErrReservationContended = errors.New("the ports or hosts this object claims are being reserved by other requests at the same moment; retry")

// reserve makes the allowed decision d safe across replicas: it publishes the
// request's claims, and when other replicas reserved something under one of
// its keys that this one did not know, judges the request again with it.
// It returns the final decision; a refused request withdraws what it had
// published.
func (r *Reviewer) reserve(ctx context.Context, in *policies.Input, engine *policies.Engine, d policies.Decision) (policies.Decision, error) {
	cfg := engine.Config()
	for range maxJudgements {
		learned, err := r.reservations.Reserve(ctx, in, cfg)
		if err != nil {
			r.unreserve(ctx, in, cfg)
			return d, err
		}
		if !learned {
			return d, nil
		}
		r.withFacts(in, engine)
		if d, err = engine.Evaluate(ctx, in); err != nil || !d.Allowed() {
			r.unreserve(ctx, in, cfg)
			return d, err
		}
	}
	r.unreserve(ctx, in, cfg)
	return d, ErrReservationContended
}

func (r *Reviewer) unreserve(ctx context.Context, in *policies.Input, cfg *policies.Config) {
	// Also when the request's own deadline passed; failures leave entries
	// that expire on their own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unreserveTimeout)
	defer cancel()
	_ = r.reservations.Unreserve(ctx, in, cfg)
}
