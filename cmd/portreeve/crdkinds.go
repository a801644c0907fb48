package main

import (
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/portreeve/portreeve/webhook/inventory"
)

// watchCRDKinds adds to the manager the watcher that brings the kinds a CRD
// serves (Gateway API) into the inventory once discovery shows them: a
// cluster without their CRDs starts and serves as before.
func watchCRDKinds(mgr manager.Manager, inv *inventory.Inventory, every time.Duration) error {
	disc, err := discovery.NewDiscoveryClientForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	return mgr.Add(inv.WatchCRDKinds(disc, dyn, every, mgr.GetLogger().WithName("crd-kinds")))
}
