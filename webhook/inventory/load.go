package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// Load fills a new inventory from the cluster once, for a command that
// looks at it (`portreeve ports`): it starts the informers that serve
// starts (CacheOptions, Register), waits until each has delivered its
// initial list, and stops them. The inventory keeps what they delivered.
func Load(ctx context.Context, cfg *rest.Config, opts Options) (*Inventory, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	copts := CacheOptions()
	copts.Scheme = scheme
	c, err := cache.New(cfg, copts)
	if err != nil {
		return nil, err
	}
	inv := New(opts)
	if err := inv.Register(ctx, c); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !inv.Synced() {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the informers did not sync (can this user list and watch pods, workloads, services, ingresses and namespaces?): %w", ctx.Err())
		case err := <-done:
			if err == nil {
				err = errors.New("stopped")
			}
			return nil, fmt.Errorf("informers: %w", err)
		case <-t.C:
		}
	}
	cancel()
	<-done
	return inv, nil
}
