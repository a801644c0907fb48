package inventory

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
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

	// polled is set once discovery has been asked: until then Synced is
	// false, so that a replica is not ready before it knows which kinds
	// to list. synced latches once the informers the first poll started
	// have listed their kinds.
	polled atomic.Bool
	synced atomic.Bool

	mu      sync.Mutex
	started map[schema.GroupVersionResource]*crdInformer
}

// crdInformer is the running informer of one CRD kind.
type crdInformer struct {
	kind *exposure.Kind
	inf  toolscache.SharedIndexInformer
	stop context.CancelFunc
	done chan struct{} // closed when the informer has stopped
}

// WatchCRDKinds returns the runnable (add it to the manager) that watches
// the CRD kinds into inv; interval <= 0 means DefaultCRDPollInterval.
func (inv *Inventory) WatchCRDKinds(disc discovery.DiscoveryInterface, dyn dynamic.Interface, interval time.Duration, log logr.Logger) *CRDKinds {
	if interval <= 0 {
		interval = DefaultCRDPollInterval
	}
	c := &CRDKinds{inv: inv, discovery: disc, dynamic: dyn, interval: interval, log: log,
		started: map[schema.GroupVersionResource]*crdInformer{}}
	inv.crds.Store(c)
	return c
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
		if c.started[gvrOf(k)] != nil {
			out = append(out, k.String())
		}
	}
	return out
}

// Synced reports whether discovery was asked once and the informers it
// started then have listed their kinds: a replica is not ready before (a
// route's conflicts would be judged against routes not listed yet). A kind
// whose CRD is applied later does not make a ready replica unready (every
// replica at once, failing admission cluster-wide): its objects join the
// inventory as its informer lists them.
func (c *CRDKinds) Synced() bool {
	if c.synced.Load() {
		return true
	}
	if !c.polled.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ci := range c.started {
		if !ci.inf.HasSynced() {
			return false
		}
	}
	c.synced.Store(true)
	return true
}

// poll starts an informer for each CRD kind that discovery shows served,
// and stops the informer of a kind no longer served (its CRD was deleted,
// and every object of it with the CRD), dropping its objects from the
// index. absent remembers the kinds already logged as not served.
func (c *CRDKinds) poll(ctx context.Context, absent map[string]bool) {
	defer c.polled.Store(true)
	served := map[string][]string{} // group/version -> resources
	failed := map[string]bool{}     // group/version -> discovery failed: keep what runs
	for _, k := range crdKinds() {
		gvr := gvrOf(k)
		c.mu.Lock()
		running := c.started[gvr]
		c.mu.Unlock()
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
				failed[gv] = true
				c.log.Error(err, "discovery of a CRD kind failed; asking again later", "groupVersion", gv)
			}
			served[gv] = resources
		}
		isServed := slices.Contains(resources, gvr.Resource)
		if running != nil {
			if !isServed && !failed[gv] {
				c.stop(gvr, running)
				c.log.Info("kind no longer served (its CRD was deleted): stopped watching it and forgot its objects", "kind", k.String())
			}
			continue
		}
		if !isServed {
			if !absent[k.String()] {
				absent[k.String()] = true
				c.log.Info("kind not served (its CRD is not installed); it is watched once it is", "kind", k.String(), "every", c.interval.String())
			}
			continue
		}
		delete(absent, k.String())
		c.start(ctx, k, gvr)
		c.log.Info("watching a CRD kind into the inventory", "kind", k.String())
	}
}

// stop ends the informer of a kind no longer served and deletes from the
// index the objects it had shown.
func (c *CRDKinds) stop(gvr schema.GroupVersionResource, ci *crdInformer) {
	ci.stop()
	select { // no event may reach the index after its objects leave it
	case <-ci.done:
	case <-time.After(10 * time.Second):
		c.log.Info("the informer of a deleted CRD kind is slow to stop", "kind", ci.kind.String())
	}
	c.mu.Lock()
	delete(c.started, gvr)
	c.mu.Unlock()
	for _, key := range ci.inf.GetStore().ListKeys() {
		ns, name, err := toolscache.SplitMetaNamespaceKey(key)
		if err != nil {
			continue
		}
		c.inv.index.Delete(objectKey{kind: ci.kind.Kind, namespace: ns, name: name})
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
	ctx, cancel := context.WithCancel(ctx)
	ci := &crdInformer{kind: k, inf: inf, stop: cancel, done: make(chan struct{})}
	c.mu.Lock()
	c.started[gvr] = ci
	c.mu.Unlock()
	go func() {
		defer close(ci.done)
		inf.RunWithContext(ctx)
	}()
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
