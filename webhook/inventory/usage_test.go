package inventory

import (
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestGrantUsage: granted, used and free ports per grant and range, the
// next free ones, and expiry.
func TestGrantUsage(t *testing.T) {
	udp := func(port int32) corev1.ContainerPort {
		p := hp(port)
		p.Protocol = corev1.ProtocolUDP
		return p
	}
	cfg := config(t, `
grants:
  - name: team-a
    namespaces: [team-a]
    nodePorts: ["30100-30104", "29990-30001"]
    hostPorts: ["9100-9102", "53/UDP", "30000-30002"]
    expires: "2026-04-30"
  - name: lb-only
    namespaces: [team-b]
    loadBalancer: true
`)
	now := testNow
	inv := newTestInventory(&now)
	feed(t, inv.index,
		nodePortService(meta("team-a", "web"), 30100, 30102),
		nodePortService(meta("team-b", "first"), 30000),
		pod(meta("team-b", "hp-in-range"), podSpec("n1", nil, hp(30103))),
		pod(meta("team-a", "exporter"), podSpec("n1", nil, hp(9101))),
		pod(meta("team-a", "dns-tcp"), podSpec("n1", nil, hp(53))),
		pod(meta("team-a", "other-udp"), podSpec("n1", nil, udp(9100))),
	)
	tests := []struct {
		name     string
		nextFree int
		want     string
	}{
		{
			name:     "with the next free ports",
			nextFree: 2,
			want: `[{"grant":"team-a","expires":"2026-04-30","expiresAt":"2026-04-30T23:59:59.999999999Z","expired":true,` +
				`"hostPorts":{"granted":7,"used":3,"free":2,"ranges":[` +
				// 9100/UDP and 9101/TCP are held: the range names no protocol.
				`{"range":"9100-9102","from":9100,"to":9102,"granted":3,"used":2,"free":1,"nextFree":[9102]},` +
				// 53/TCP does not hold 53/UDP.
				`{"range":"53/UDP","from":53,"to":53,"protocol":"UDP","granted":1,"used":0,"free":1,"nextFree":[53]},` +
				// Inside the NodePort range: 30000 is a Service's, the others never free.
				`{"range":"30000-30002","from":30000,"to":30002,"granted":3,"used":1,"free":0}]},` +
				`"nodePorts":{"granted":7,"used":4,"free":3,"ranges":[` +
				// 30103 is a hostPort: the inventory never hands it out.
				`{"range":"30100-30104","from":30100,"to":30104,"granted":5,"used":3,"free":2,"nextFree":[30101,30104]},` +
				// Only 30000-30001 lie in the cluster's range.
				`{"range":"29990-30001","from":29990,"to":30001,"granted":2,"used":1,"free":1,"nextFree":[30001]}]}},` +
				`{"grant":"lb-only"}]`,
		},
		{
			name: "counts only",
			want: `[{"grant":"team-a","expires":"2026-04-30","expiresAt":"2026-04-30T23:59:59.999999999Z","expired":true,` +
				`"hostPorts":{"granted":7,"used":3,"free":2,"ranges":[` +
				`{"range":"9100-9102","from":9100,"to":9102,"granted":3,"used":2,"free":1},` +
				`{"range":"53/UDP","from":53,"to":53,"protocol":"UDP","granted":1,"used":0,"free":1},` +
				`{"range":"30000-30002","from":30000,"to":30002,"granted":3,"used":1,"free":0}]},` +
				`"nodePorts":{"granted":7,"used":4,"free":3,"ranges":[` +
				`{"range":"30100-30104","from":30100,"to":30104,"granted":5,"used":3,"free":2},` +
				`{"range":"29990-30001","from":29990,"to":30001,"granted":2,"used":1,"free":1}]}},` +
				`{"grant":"lb-only"}]`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(inv.GrantUsage(cfg, tc.nextFree))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b, tc.want)
			}
		})
	}
}

// TestGrantUsageMoves: a Service taking a port of a grant's range moves it
// from free to used, and deleting it moves it back.
func TestGrantUsageMoves(t *testing.T) {
	cfg := config(t, "grants:\n  - {name: team-a, namespaces: [team-a], nodePorts: [\"30100-30109\"]}\n")
	now := testNow
	inv := newTestInventory(&now)
	counts := func() [3]int {
		u := inv.GrantUsage(cfg, 1)[0].NodePorts
		return [3]int{u.Granted, u.Used, u.Free}
	}
	if got := counts(); got != [3]int{10, 0, 10} {
		t.Fatalf("empty: %v", got)
	}
	svc := nodePortService(meta("team-a", "web"), 30100)
	feed(t, inv.index, svc)
	if got := counts(); got != [3]int{10, 1, 9} {
		t.Fatalf("after the Service: %v", got)
	}
	if next := inv.GrantUsage(cfg, 1)[0].NodePorts.Ranges[0].NextFree; len(next) != 1 || next[0] != 30101 {
		t.Fatalf("next free %v", next)
	}
	inv.index.Delete(objectKey{kind: "Service", namespace: "team-a", name: "web"})
	if got := counts(); got != [3]int{10, 0, 10} {
		t.Fatalf("after the delete: %v", got)
	}
	stored, pending := inv.ObjectCounts()
	if len(stored) != 0 || len(pending) != 0 {
		t.Fatalf("objects %v, pending %v", stored, pending)
	}
}

// TestObjectCounts counts the objects that hold something, by kind.
func TestObjectCounts(t *testing.T) {
	now := testNow
	inv := newTestInventory(&now)
	feed(t, inv.index,
		nodePortService(meta("team-a", "web"), 30100),
		pod(meta("team-a", "a"), podSpec("n1", nil, hp(9100))),
		pod(meta("team-a", "b"), podSpec("n1", nil, hp(9101))),
		pod(meta("team-a", "nothing"), podSpec("n1", nil)),
	)
	stored, pending := inv.ObjectCounts()
	if stored["Pod"] != 2 || stored["Service"] != 1 || len(stored) != 2 || len(pending) != 0 {
		t.Fatalf("objects %v, pending %v", stored, pending)
	}
}

// BenchmarkGrantUsage is one scrape's work for the per-grant gauges: the
// built-in configuration (a grant of every hostPort and the whole NodePort
// range) plus ten team grants, over 2,000 holders.
func BenchmarkGrantUsage(b *testing.B) {
	y := "grants:\n  - {name: system, namespaces: [kube-system], hostPorts: [\"1-65535\"], nodePorts: [\"30000-32767\"]}\n"
	for i := range 10 {
		y += fmt.Sprintf("  - {name: team-%d, namespaces: [team-%d], hostPorts: [\"%d-%d\"], nodePorts: [\"%d-%d\"]}\n", i, i, 9000+100*i, 9099+100*i, 30000+100*i, 30099+100*i)
	}
	cfg := config(b, y)
	now := testNow
	inv := newTestInventory(&now)
	for i := range 1000 {
		feed(b, inv.index,
			pod(meta("team-a", fmt.Sprintf("p%d", i)), podSpec(fmt.Sprintf("n%d", i), nil, hp(int32(9000+i)))),
			nodePortService(meta("team-a", fmt.Sprintf("s%d", i)), int32(30000+i)))
	}
	b.ReportAllocs()
	for b.Loop() {
		inv.GrantUsage(cfg, 0)
	}
}
