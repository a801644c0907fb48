package inventory

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portreeve/portreeve/policies/exposure"
)

// watch is one informer of the inventory.
type watch struct {
	obj       client.Object
	transform toolscache.TransformFunc
	// claims: its objects feed the index.
	claims bool
}

// watched lists what the inventory watches with the manager's cache: every
// reviewed kind (the table in policies/exposure) but those a CRD serves
// (crds.go), as typed objects, which the transform of its kind turns into a
// Held as they arrive (typed.go), and namespaces' metadata.
func watched() []watch {
	kinds := exposure.Kinds()
	out := make([]watch, 0, len(kinds)+1)
	for i := range kinds {
		k := &kinds[i]
		if k.CRD {
			continue
		}
		obj, err := typedObject(k)
		if err != nil {
			panic("inventory: a reviewed kind the client-go scheme does not know: " + err.Error())
		}
		out = append(out, watch{obj, Transform(k), true})
	}
	return append(out, watch{NamespaceMetadata(), TransformNamespace, false})
}

// NamespaceMetadata is the object the namespace (labels) informer watches:
// metadata only.
func NamespaceMetadata() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}

// CacheOptions are the manager's cache options: the inventory's transforms
// for what it watches, and managed fields stripped from anything else.
func CacheOptions() cache.Options {
	byObject := map[client.Object]cache.ByObject{}
	for _, w := range watched() {
		byObject[w.obj] = cache.ByObject{Transform: w.transform}
	}
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject:         byObject,
	}
}

// Register starts (with the cache) an informer for every watched kind and
// feeds the index from them. The inventory is ready once each handler has
// received its informer's initial list. Call it before the cache starts.
func (inv *Inventory) Register(ctx context.Context, informers cache.Informers) error {
	var regs []toolscache.ResourceEventHandlerRegistration
	for _, w := range watched() {
		inf, err := informers.GetInformer(ctx, w.obj, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("inventory informer for %s: %w", w.obj.GetObjectKind().GroupVersionKind().Kind, err)
		}
		var h toolscache.ResourceEventHandler = toolscache.ResourceEventHandlerFuncs{}
		if w.claims {
			h = handler{index: inv.index, now: inv.opts.Now}
		}
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("inventory handler for %s: %w", w.obj.GetObjectKind().GroupVersionKind().Kind, err)
		}
		regs = append(regs, reg)
	}
	synced := func() bool {
		for _, r := range regs {
			if !r.HasSynced() {
				return false
			}
		}
		return true
	}
	inv.synced.Store(&synced)
	return nil
}

// handler feeds informer events into the index.
type handler struct {
	index *Index
	// now stamps deletions (nil: they are not remembered).
	now func() time.Time
}

func (h handler) OnAdd(obj any, _ bool) { h.upsert(obj) }

func (h handler) OnUpdate(_, obj any) { h.upsert(obj) }

func (h handler) OnDelete(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if c := claimsOf(obj); c != nil {
		if h.now != nil {
			h.index.DeleteAt(c.key, h.now())
		} else {
			h.index.Delete(c.key)
		}
	}
}

func (h handler) upsert(obj any) {
	if c := claimsOf(obj); c != nil {
		h.index.Upsert(c)
	}
}
