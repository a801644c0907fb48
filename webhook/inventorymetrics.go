package webhook

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/inventory"
)

// InventorySource is what the inventory's metrics read, on each scrape.
type InventorySource interface {
	Synced() bool
	GrantUsage(cfg *policies.Config, nextFree int) []inventory.GrantUsage
	ObjectCounts() (stored, pending map[string]int)
}

// InventoryCollector exports the inventory's gauges, computed when
// Prometheus scrapes rather than on every request: granted, used and free
// ports per grant and kind, grant expiry, objects per kind, and whether the
// informers have synced.
type InventoryCollector struct {
	inv    InventorySource
	config func() *policies.Config

	grantPorts, grantExpiry, objects, pending, synced *prometheus.Desc
}

// NewInventoryCollector reads inv under the configuration config returns
// (the one in use: it changes on a reload).
func NewInventoryCollector(inv InventorySource, config func() *policies.Config) *InventoryCollector {
	return &InventoryCollector{
		inv: inv, config: config,
		grantPorts: prometheus.NewDesc("portreeve_grant_ports",
			"Ports of each grant's ranges by kind (hostPort, nodePort) and state: granted (nodePorts: inside the cluster's "+
				"NodePort range), used (held on some node, by any namespace) and free (neither; hostPorts inside the NodePort "+
				"range are never free).", []string{"grant", "kind", "state"}, nil),
		grantExpiry: prometheus.NewDesc("portreeve_grant_expiry_timestamp_seconds",
			"When each grant that sets expires ends (Unix time).", []string{"grant"}, nil),
		objects: prometheus.NewDesc("portreeve_inventory_objects",
			"Objects the informers show that hold a hostPort, nodePort or Ingress host, by kind.", []string{"kind"}, nil),
		pending: prometheus.NewDesc("portreeve_inventory_pending_objects",
			"Objects admitted whose claims count until the informers show them, by kind.", []string{"kind"}, nil),
		synced: prometheus.NewDesc("portreeve_inventory_synced",
			"1 once every informer of the inventory has delivered its initial list, else 0.", nil, nil),
	}
}

// Describe sends the descriptions of the gauges.
func (c *InventoryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.grantPorts, c.grantExpiry, c.objects, c.pending, c.synced} {
		ch <- d
	}
}

// Collect computes the gauges from the inventory.
func (c *InventoryCollector) Collect(ch chan<- prometheus.Metric) {
	synced := 0.0
	if c.inv.Synced() {
		synced = 1
	}
	ch <- prometheus.MustNewConstMetric(c.synced, prometheus.GaugeValue, synced)
	stored, pending := c.inv.ObjectCounts()
	for _, kc := range []struct {
		desc   *prometheus.Desc
		counts map[string]int
	}{{c.objects, stored}, {c.pending, pending}} {
		for kind, n := range kc.counts {
			ch <- prometheus.MustNewConstMetric(kc.desc, prometheus.GaugeValue, float64(n), kind)
		}
	}
	var seen []string // a name twice (an invalid configuration) would make a duplicate series
	for _, u := range c.inv.GrantUsage(c.config(), 0) {
		if slices.Contains(seen, u.Grant) {
			continue
		}
		seen = append(seen, u.Grant)
		if u.ExpiresAt != nil {
			ch <- prometheus.MustNewConstMetric(c.grantExpiry, prometheus.GaugeValue, float64(u.ExpiresAt.Unix()), u.Grant)
		}
		for _, k := range []struct {
			kind string
			u    *inventory.PortUsage
		}{{"hostPort", u.HostPorts}, {"nodePort", u.NodePorts}} {
			if k.u == nil {
				continue
			}
			for _, s := range []struct {
				state string
				n     int
			}{{"granted", k.u.Granted}, {"used", k.u.Used}, {"free", k.u.Free}} {
				ch <- prometheus.MustNewConstMetric(c.grantPorts, prometheus.GaugeValue, float64(s.n), u.Grant, k.kind, s.state)
			}
		}
	}
}
