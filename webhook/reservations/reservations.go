// Package reservations lets Portreeve's replicas agree on contested keys
// with the apiserver as the arbiter. Before a replica admits a request that
// claims a host port, an explicit node port or an Ingress host, it publishes
// what the request claims under each key in a coordination.k8s.io Lease of
// its namespace (one Lease per key), writing with the Lease's resource
// version as a precondition, so that of two replicas writing one key at once
// the second fails, reads what the first published, and judges its request
// again with it. Entries expire; a replica drops the entries the informers
// have shown for a while whenever it writes a Lease, and deletes Leases whose
// entries all have.
package reservations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/ptr"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/inventory"
)

// Annotation holds a Lease's reservations (a JSON list).
const Annotation = "portreeve.io/reservations"

// Label marks reservation Leases; its value is the Store's Prefix.
const Label = "portreeve.io/reservation"

// DomainLabel marks the Lease of an exact Ingress host with (a hash of) its
// parent domain, for a wildcard request to list them.
const DomainLabel = "portreeve.io/domain"

// Defaults.
const (
	DefaultTTL    = 30 * time.Second
	DefaultSettle = 5 * time.Second
	// maxWrites bounds the writes of one key per request: each failed one
	// means another replica wrote the key in between.
	maxWrites = 32
)

// Local is what the replica knows: its inventory.
type Local interface {
	// Reservations plans what the request in reserves.
	Reservations(in *policies.Input, cfg *policies.Config) inventory.Plan
	// Learn records other replicas' reservations; true when one may
	// conflict with one of own and was not known at generation seen.
	Learn(rs, own []inventory.Reservation, seen uint64) bool
	// Settled reports whether the informers have shown the reserved object
	// for longer than settle.
	Settled(r *inventory.Reservation, settle time.Duration) bool
}

// Options configure a Store.
type Options struct {
	Leases    coordinationv1client.LeasesGetter
	Namespace string
	// Prefix starts every Lease name (and is the Label's value).
	Prefix string
	// Replica names this replica in the entries it writes.
	Replica string
	// TTL is how long an entry counts; Settle how long after the informers
	// show its object it is dropped.
	TTL, Settle time.Duration
	Local       Local
	// Metrics, when set, count the reservations.
	Metrics *Metrics
	Now     func() time.Time
}

// Store reserves keys in Leases.
type Store struct {
	opts   Options
	leases coordinationv1client.LeaseInterface
}

// New returns a Store.
func New(opts Options) *Store {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Settle <= 0 {
		opts.Settle = DefaultSettle
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{opts: opts, leases: opts.Leases.Leases(opts.Namespace)}
}

// Error is a reservation that could not be written: the apiserver refused or
// did not answer. The request is then refused (it could not be made safe).
type Error struct {
	Key string
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("could not reserve %s in the cluster (so that Portreeve's other replicas see it): %v", e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Reserve publishes what the request in claims under each key that cfg's
// conflict rules enforce (review.Reservations).
func (s *Store) Reserve(ctx context.Context, in *policies.Input, cfg *policies.Config) (bool, error) {
	plan := s.opts.Local.Reservations(in, cfg)
	if plan.Empty() {
		return false, nil
	}
	start := time.Now()
	var seen uint64
	if in.Facts != nil {
		seen = in.Facts.Seen
	}
	learned, err := s.ReserveKeys(ctx, plan, seen)
	s.opts.Metrics.observe(learned, err, time.Since(start))
	return learned, err
}

// Unreserve withdraws what Reserve published for in (review.Reservations).
func (s *Store) Unreserve(ctx context.Context, in *policies.Input, cfg *policies.Config) error {
	return s.UnreserveKeys(ctx, s.opts.Local.Reservations(in, cfg))
}

// ReserveKeys publishes each of the plan's reservations under its key, in
// order, then reads what the plan reads. When a key holds reservations of
// other objects that the replica did not know, it records them
// (Local.Learn), writes nothing more and returns true: the request must be
// judged again with them, and reserved again if still admitted.
func (s *Store) ReserveKeys(ctx context.Context, plan inventory.Plan, seen uint64) (learned bool, err error) {
	now := s.opts.Now()
	for _, r := range plan.Writes {
		e := r.Reservation
		e.Replica, e.At, e.Until = s.opts.Replica, now, now.Add(s.opts.TTL)
		learned, err := s.reserve(ctx, r, e, seen)
		if err != nil {
			return false, &Error{Key: describe(r), Err: err}
		}
		if learned {
			return true, nil
		}
	}
	if plan.Empty() {
		return false, nil
	}
	self := &plan.Writes[0].Reservation
	own := make([]inventory.Reservation, len(plan.Writes))
	for i, w := range plan.Writes {
		own[i] = w.Reservation
	}
	var found []inventory.Reservation
	for _, key := range plan.Reads {
		lease, err := s.leases.Get(ctx, s.leaseName(key), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, &Error{Key: "the wildcard host of " + describe(plan.Writes[0]), Err: err}
		}
		found = append(found, s.prune(entries(lease), self)...)
	}
	for _, d := range plan.Domains {
		list, err := s.leases.List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{Label: s.opts.Prefix, DomainLabel: d}).String()})
		if err != nil {
			return false, &Error{Key: "the hosts under " + describe(plan.Writes[0]), Err: err}
		}
		for i := range list.Items {
			found = append(found, s.prune(entries(&list.Items[i]), self)...)
		}
	}
	return s.opts.Local.Learn(found, own, seen), nil
}

func (s *Store) reserve(ctx context.Context, r inventory.Reserve, e inventory.Reservation, seen uint64) (bool, error) {
	name := s.leaseName(r.Key)
	lease, err := s.create(ctx, name, r.Domain, []inventory.Reservation{e})
	if err == nil || !apierrors.IsAlreadyExists(err) {
		return false, err
	}
	for range maxWrites {
		lease, err = s.leases.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			// Deleted since: create it again.
			if _, err = s.create(ctx, name, r.Domain, []inventory.Reservation{e}); err == nil || !apierrors.IsAlreadyExists(err) {
				return false, err
			}
			continue
		}
		if err != nil {
			return false, err
		}
		others := s.prune(entries(lease), &e)
		if s.opts.Local.Learn(others, []inventory.Reservation{e}, seen) {
			return true, nil
		}
		err = s.update(ctx, lease, append(others, e))
		if err == nil || !(apierrors.IsConflict(err) || apierrors.IsNotFound(err)) {
			return false, err
		}
	}
	return false, errors.New("too many concurrent writes of the key; retry")
}

// prune returns the entries that still count (not expired, not settled),
// except those of e's object (e replaces them).
func (s *Store) prune(all []inventory.Reservation, e *inventory.Reservation) []inventory.Reservation {
	now := s.opts.Now()
	var kept []inventory.Reservation
	for i := range all {
		r := &all[i]
		if r.Until.After(now) && !s.opts.Local.Settled(r, s.opts.Settle) && (e == nil || !r.SameObject(e)) {
			kept = append(kept, *r)
		}
	}
	return kept
}

// UnreserveKeys removes the request's entries (it was refused after all), so
// that they do not block the keys until they expire. Failures are returned
// for the log only: the entries expire anyway.
func (s *Store) UnreserveKeys(ctx context.Context, plan inventory.Plan) error {
	var errs []error
	for _, r := range plan.Writes {
		name := s.leaseName(r.Key)
		for range maxWrites {
			lease, err := s.leases.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if err != nil {
				errs = append(errs, err)
				break
			}
			all := entries(lease)
			kept := all[:0:0]
			for _, o := range all {
				if !(o.SameObject(&r.Reservation) && o.Replica == s.opts.Replica) {
					kept = append(kept, o)
				}
			}
			if len(kept) == len(all) {
				break
			}
			err = s.update(ctx, lease, kept)
			if err == nil || apierrors.IsNotFound(err) {
				break
			}
			if !apierrors.IsConflict(err) {
				errs = append(errs, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// describe names a key for messages: "hostPort TCP/8080".
func describe(r inventory.Reserve) string {
	e := r.Reservation
	switch {
	case len(e.HostPorts) > 0:
		return fmt.Sprintf("hostPort %s/%d", e.HostPorts[0].Protocol, e.HostPorts[0].Port)
	case len(e.NodePorts) > 0:
		return fmt.Sprintf("nodePort %d", e.NodePorts[0].Port)
	case len(e.Hosts) > 0:
		return "host " + e.Hosts[0].Host
	}
	return r.Key
}

func (s *Store) leaseName(key string) string { return s.opts.Prefix + "-" + key }

func (s *Store) create(ctx context.Context, name, domain string, es []inventory.Reservation) (*coordinationv1.Lease, error) {
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{Label: s.opts.Prefix, "app.kubernetes.io/managed-by": "portreeve"},
	}}
	if domain != "" {
		lease.Labels[DomainLabel] = domain
	}
	if err := s.fill(lease, es); err != nil {
		return nil, err
	}
	return s.leases.Create(ctx, lease, metav1.CreateOptions{})
}

// update writes es to lease, at the version read: it fails with a conflict
// when another replica wrote the Lease since.
func (s *Store) update(ctx context.Context, lease *coordinationv1.Lease, es []inventory.Reservation) error {
	lease = lease.DeepCopy()
	if err := s.fill(lease, es); err != nil {
		return err
	}
	_, err := s.leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// fill writes the entries into the annotation, and the Lease's spec so that
// `kubectl get leases` says who wrote it last and for how long it counts.
func (s *Store) fill(lease *coordinationv1.Lease, es []inventory.Reservation) error {
	b, err := json.Marshal(es)
	if err != nil {
		return err
	}
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	lease.Annotations[Annotation] = string(b)
	now := metav1.NewMicroTime(s.opts.Now())
	lease.Spec.HolderIdentity = ptr.To(s.opts.Replica)
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(s.opts.TTL.Seconds()))
	lease.Spec.RenewTime = &now
	if lease.Spec.AcquireTime == nil {
		lease.Spec.AcquireTime = &now
	}
	return nil
}

// entries reads a Lease's reservations; a malformed annotation (edited by
// hand) reads as none, which the next write replaces.
func entries(lease *coordinationv1.Lease) []inventory.Reservation {
	var es []inventory.Reservation
	if err := json.Unmarshal([]byte(lease.Annotations[Annotation]), &es); err != nil {
		return nil
	}
	return es
}
