package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// Load fills a new inventory from the cluster once, for a command that
// looks at it (`portreeve ports`): it starts the informers that serve
// starts (CacheOptions, Register, and those of the CRD kinds the cluster
// serves), waits until each has delivered its
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
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	// The kinds a CRD serves (Gateway API), where the cluster serves them.
	crds := inv.WatchCRDKinds(disc, dyn, 0, logr.Discard())
	crds.poll(ctx, map[string]bool{})
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !inv.Synced() || !crds.Synced() {
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
