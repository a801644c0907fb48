package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portreeve/portreeve/policies"
	portreevewebhook "github.com/portreeve/portreeve/webhook"
	"github.com/portreeve/portreeve/webhook/review"
)

// registerInventoryMetrics registers the inventory's gauges (per-grant
// ports, objects, sync), computed on scrape under the configuration in use.
func registerInventoryMetrics(reg prometheus.Registerer, inv portreevewebhook.InventorySource, reviewer *review.Reviewer) error {
	return reg.Register(portreevewebhook.NewInventoryCollector(inv, func() *policies.Config { return reviewer.Engine().Config() }))
}
