package inventory

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// watched lists the objects the inventory watches with the transform that
// slims each before it enters the cache.
func watched() []struct {
	obj       client.Object
	transform toolscache.TransformFunc
	claims    bool
} {
	return []struct {
		obj       client.Object
		transform toolscache.TransformFunc
		claims    bool
	}{
		{&corev1.Pod{}, TransformPod, true},
		{&corev1.Service{}, TransformService, true},
		{&networkingv1.Ingress{}, TransformIngress, true},
		{&appsv1.Deployment{}, TransformWorkload, true},
		{&appsv1.StatefulSet{}, TransformWorkload, true},
		{&appsv1.DaemonSet{}, TransformWorkload, true},
		{&appsv1.ReplicaSet{}, TransformWorkload, true},
		{&corev1.ReplicationController{}, TransformWorkload, true},
		{&batchv1.Job{}, TransformWorkload, true},
		{&batchv1.CronJob{}, TransformWorkload, true},
		{NamespaceMetadata(), TransformNamespace, false},
	}
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
			return fmt.Errorf("inventory informer for %T: %w", w.obj, err)
		}
		var h toolscache.ResourceEventHandler = toolscache.ResourceEventHandlerFuncs{}
		if w.claims {
			h = handler{index: inv.index}
		}
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("inventory handler for %T: %w", w.obj, err)
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
}

func (h handler) OnAdd(obj any, _ bool) { h.upsert(obj) }

func (h handler) OnUpdate(_, obj any) { h.upsert(obj) }

func (h handler) OnDelete(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if c := claimsOf(obj); c != nil {
		h.index.Delete(c.key)
	}
}

func (h handler) upsert(obj any) {
	if c := claimsOf(obj); c != nil {
		h.index.Upsert(c)
	}
}
