package review

import (
	"slices"
	"strconv"
	"sync"

	"github.com/portreeve/portreeve/policies"
)

// Requests that record claims hold the keys they contest from their facts to
// their record, so that of two concurrent requests for one port the second
// sees the first's claim; requests that contest nothing, or other keys, run
// in parallel. A key is as coarse as it must be to be safe:
//   - a hostPort by protocol and number (whatever its hostIP and nodes: the
//     inventory settles those, under the key);
//   - every Service that opens node ports shares one key (explicit nodePorts,
//     and the free ports the mutating webhook assigns from a namespace's range);
//   - every Ingress shares one key (wildcards, default backends and host-less
//     rules claim hosts across names).
//
// A hostPort inside the NodePort range is denied outright, so Pods and
// Services need no shared key.
func contestedKeys(in *policies.Input) []string {
	x := in.Exposure
	switch {
	case x == nil:
		return nil
	case x.Pod != nil:
		keys := make([]string, 0, len(x.Pod.HostPorts))
		for _, hp := range x.Pod.HostPorts {
			keys = append(keys, "hostPort/"+hp.Protocol+"/"+strconv.Itoa(hp.Port))
		}
		return keys
	case x.Service != nil && (x.Service.Type == "NodePort" || x.Service.Type == "LoadBalancer"):
		return []string{"nodePorts"}
	case x.Ingress != nil, x.Route != nil && (len(x.Route.Hosts) > 0 || len(x.Route.Paths) > 0):
		return []string{"ingresses"} // routes claim hosts alike, their own or their parents' listeners'
	}
	return nil
}

// keyedMutex locks sets of keys: each key is held by one caller at a time.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

// lock takes every key (in sorted order, so that two callers never wait on
// each other) and returns what releases them.
func (k *keyedMutex) lock(keys []string) (unlock func()) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	held := make([]*keyLock, 0, len(keys))
	for _, key := range keys {
		k.mu.Lock()
		if k.locks == nil {
			k.locks = map[string]*keyLock{}
		}
		l := k.locks[key]
		if l == nil {
			l = &keyLock{}
			k.locks[key] = l
		}
		l.refs++
		k.mu.Unlock()
		l.Lock()
		held = append(held, l)
	}
	return func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].Unlock()
			k.mu.Lock()
			if held[i].refs--; held[i].refs == 0 {
				delete(k.locks, keys[i])
			}
			k.mu.Unlock()
		}
	}
}
