package certs

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// conflictOnce returns interceptor funcs that, on the first Create or Update
// of the Secret, let another replica write first, so the call conflicts.
func conflictOnce(t *testing.T, other func(context.Context, client.Client)) interceptor.Funcs {
	t.Helper()
	var once sync.Once
	race := func(ctx context.Context, c client.WithWatch, obj client.Object) {
		if _, ok := obj.(*corev1.Secret); ok {
			once.Do(func() { other(ctx, c) })
		}
	}
	return interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			race(ctx, c, obj)
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			race(ctx, c, obj)
			return c.Update(ctx, obj, opts...)
		},
	}
}

func TestRotatorConcurrentWriteKeepsOtherReplicasCert(t *testing.T) {
	tests := []struct {
		name string
		// seed prepares the Secret before the race; nil means no Secret yet.
		seed      func(t *testing.T, c client.Client, clock *fakeClock)
		raceClock time.Time
	}{
		{name: "both create the Secret", raceClock: t0},
		{
			name: "both renew the serving certificate",
			seed: func(t *testing.T, c client.Client, clock *fakeClock) {
				t.Helper()
				if err := newTestRotator(t, c, testOptions(t, clock)).Sync(testCtx(t)); err != nil {
					t.Fatal(err)
				}
			},
			raceClock: t0.Add(300 * day),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			base := newClient(validatingConfig(), mutatingConfig()).Build()
			if tc.seed != nil {
				tc.seed(t, base, clock)
			}
			clock.Set(tc.raceClock)

			var otherWrote Bundle
			funcs := conflictOnce(t, func(ctx context.Context, c client.Client) {
				other := newTestRotator(t, c, testOptions(t, clock))
				b, err := other.syncSecret(ctx, clock.Now())
				if err != nil {
					t.Errorf("other replica: %v", err)
				}
				otherWrote = b
			})
			c := interceptor.NewClient(base, funcs)
			r := newTestRotator(t, c, testOptions(t, clock))
			if err := r.Sync(testCtx(t)); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			if len(otherWrote.TLSCert) == 0 {
				t.Fatal("the other replica did not write")
			}
			got := assertInSync(t, base, r, clock.Now())
			if !got.Equal(otherWrote) {
				t.Fatal("the other replica's valid bundle was overwritten")
			}
		})
	}
}
