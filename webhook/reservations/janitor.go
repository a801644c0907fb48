package reservations

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Start deletes, every Settle, the reservation Leases whose entries have all
// expired or settled, until ctx ends (a manager.Runnable, on every replica:
// a Lease is deleted at the version read, so two replicas cleaning at once
// never delete an entry written in between).
func (s *Store) Start(ctx context.Context) error {
	t := time.NewTicker(max(s.opts.Settle, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := s.Clean(ctx); err != nil && ctx.Err() == nil {
				log.FromContext(ctx).Error(err, "cleaning reservation Leases")
			}
		}
	}
}

// NeedLeaderElection is false: every replica cleans.
func (s *Store) NeedLeaderElection() bool { return false }

// Clean deletes the reservation Leases whose entries no longer count, and
// returns how many are left.
func (s *Store) Clean(ctx context.Context) (left int, err error) {
	list, err := s.leases.List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{Label: s.opts.Prefix}).String(),
	})
	if err != nil {
		return 0, err
	}
	for i := range list.Items {
		lease := &list.Items[i]
		if len(s.prune(entries(lease), nil)) > 0 {
			left++
			continue
		}
		err := s.leases.Delete(ctx, lease.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{ResourceVersion: &lease.ResourceVersion},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return left, err
		}
		if apierrors.IsConflict(err) {
			left++
		}
	}
	return left, nil
}
