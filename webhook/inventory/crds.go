package inventory

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/portreeve/portreeve/policies/exposure"
)

// DefaultCRDPollInterval is how often serve asks discovery whether the
// CustomResourceDefinitions of the reviewed CRD kinds (Gateway API) appeared.
const DefaultCRDPollInterval = 30 * time.Second

// CRDKinds watches the reviewed kinds that only a CustomResourceDefinition
// serves (Kind.CRD: the Gateway API). The manager's cache cannot start an
// informer for a kind the cluster does not serve, so these are watched apart
// from it: every interval discovery is asked which of them are served, and
// an informer starts for each kind once it is (at start, or when its CRD is
// applied later). A cluster without the CRDs serves as before.
type CRDKinds struct {
	inv       *Inventory
	discovery discovery.DiscoveryInterface
	dynamic   dynamic.Interface
	interval  time.Duration
	log       logr.Logger

	mu      sync.Mutex
	started map[schema.GroupVersionResource]toolscache.SharedIndexInformer
}

// WatchCRDKinds returns the runnable (add it to the manager) that watches
// the CRD kinds into inv; interval <= 0 means DefaultCRDPollInterval.
func (inv *Inventory) WatchCRDKinds(disc discovery.DiscoveryInterface, dyn dynamic.Interface, interval time.Duration, log logr.Logger) *CRDKinds {
	if interval <= 0 {
		interval = DefaultCRDPollInterval
	}
	return &CRDKinds{inv: inv, discovery: disc, dynamic: dyn, interval: interval, log: log,
		started: map[schema.GroupVersionResource]toolscache.SharedIndexInformer{}}
}

// crdKinds lists the reviewed kinds a CRD serves.
func crdKinds() []*exposure.Kind {
	var out []*exposure.Kind
	kinds := exposure.Kinds()
	for i := range kinds {
		if kinds[i].CRD {
			out = append(out, &kinds[i])
		}
	}
	return out
}

// Start polls discovery until ctx ends (manager.Runnable).
func (c *CRDKinds) Start(ctx context.Context) error {
	absent := map[string]bool{}
	for {
		c.poll(ctx, absent)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.interval):
		}
	}
}

// NeedLeaderElection: every replica keeps its own inventory.
func (c *CRDKinds) NeedLeaderElection() bool { return false }

// Watching lists the CRD kinds watched now, as group/version/Kind strings.
func (c *CRDKinds) Watching() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, k := range crdKinds() {
		if _, ok := c.started[gvrOf(k)]; ok {
			out = append(out, k.String())
		}
	}
	return out
}

// Synced reports whether every informer started so far has listed its kind.
func (c *CRDKinds) Synced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, inf := range c.started {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// poll starts an informer for each CRD kind that discovery shows served.
// absent remembers the kinds already logged as not served.
func (c *CRDKinds) poll(ctx context.Context, absent map[string]bool) {
	served := map[string][]string{} // group/version -> resources
	for _, k := range crdKinds() {
		gvr := gvrOf(k)
		c.mu.Lock()
		_, running := c.started[gvr]
		c.mu.Unlock()
		if running {
			continue
		}
		gv := gvr.GroupVersion().String()
		resources, ok := served[gv]
		if !ok {
			list, err := c.discovery.ServerResourcesForGroupVersion(gv)
			switch {
			case err == nil:
				for _, r := range list.APIResources {
					resources = append(resources, r.Name)
				}
			case !apierrors.IsNotFound(err):
				c.log.Error(err, "discovery of a CRD kind failed; asking again later", "groupVersion", gv)
			}
			served[gv] = resources
		}
		if !slices.Contains(resources, gvr.Resource) {
			if !absent[k.String()] {
				absent[k.String()] = true
				c.log.Info("kind not served (its CRD is not installed); it is watched once it is", "kind", k.String(), "every", c.interval.String())
			}
			continue
		}
		c.start(ctx, k, gvr)
		c.log.Info("watching a CRD kind into the inventory", "kind", k.String())
	}
}

func (c *CRDKinds) start(ctx context.Context, k *exposure.Kind, gvr schema.GroupVersionResource) {
	res := c.dynamic.Resource(gvr)
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (apiwatch.Interface, error) {
			return res.Watch(ctx, opts)
		},
	}
	// The wrapper tells the reflector whether the client streams a watch's
	// initial list (a real apiserver does; a test's fake does not).
	inf := toolscache.NewSharedIndexInformer(toolscache.ToListWatcherWithWatchListSemantics(lw, c.dynamic),
		&unstructured.Unstructured{}, 0, toolscache.Indexers{})
	if err := inf.SetTransform(TransformUnstructured(k)); err != nil {
		c.log.Error(err, "informer transform", "kind", k.String()) // only before Run: cannot happen
	}
	if _, err := inf.AddEventHandler(handler{index: c.inv.index, now: c.inv.opts.Now}); err != nil {
		c.log.Error(err, "informer handler", "kind", k.String())
		return
	}
	c.mu.Lock()
	c.started[gvr] = inf
	c.mu.Unlock()
	go inf.RunWithContext(ctx)
}

// TransformUnstructured is the transform of the informer of a CRD kind k:
// as Transform, from the unstructured object the dynamic client decodes.
func TransformUnstructured(k *exposure.Kind) func(obj any) (any, error) {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *Held:
			return o, nil
		case *unstructured.Unstructured:
			return held(k, o.Object), nil
		}
		return obj, nil
	}
}

func gvrOf(k *exposure.Kind) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Resource}
}
