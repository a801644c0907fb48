package inventory

import (
	"testing"
)

func TestNodeScopeOverlaps(t *testing.T) {
	tests := []struct {
		name string
		a, b nodeScope
		want bool
	}{
		{"both anywhere", nodeScope{}, nodeScope{}, true},
		{"same node", nodeScope{nodeName: "n1"}, nodeScope{nodeName: "n1"}, true},
		{"different nodes", nodeScope{nodeName: "n1"}, nodeScope{nodeName: "n2"}, false},
		{"one node, other anywhere", nodeScope{nodeName: "n1"}, nodeScope{}, true},
		{"selectors agree", nodeScope{selector: map[string]string{"role": "edge"}}, nodeScope{selector: map[string]string{"role": "edge", "zone": "a"}}, true},
		{"selectors disagree", nodeScope{selector: map[string]string{"role": "edge"}}, nodeScope{selector: map[string]string{"role": "web"}}, false},
		{"selectors on other keys", nodeScope{selector: map[string]string{"role": "edge"}}, nodeScope{selector: map[string]string{"zone": "a"}}, true},
		{"node name against selector is unknown, so may overlap", nodeScope{nodeName: "n1"}, nodeScope{selector: map[string]string{"role": "web"}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.overlaps(tc.b); got != tc.want {
				t.Errorf("a.overlaps(b) = %v, want %v", got, tc.want)
			}
			if got := tc.b.overlaps(tc.a); got != tc.want {
				t.Errorf("b.overlaps(a) = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHostIPsOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"", "", true},
		{"", "10.0.0.1", true},
		{"0.0.0.0", "10.0.0.1", true},
		{"10.0.0.1", "10.0.0.1", true},
		{"10.0.0.1", "10.0.0.2", false},
	}
	for _, tc := range tests {
		if got := hostIPsOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("hostIPsOverlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestPathsOverlap(t *testing.T) {
	prefix := func(p string) hostPath { return hostPath{path: p, prefix: true} }
	exact := func(p string) hostPath { return hostPath{path: p} }
	tests := []struct {
		name string
		a, b hostPath
		want bool
	}{
		{"same prefix", prefix("/"), prefix("/"), true},
		{"root covers all", prefix("/"), exact("/api"), true},
		{"prefix covers sub path", prefix("/api"), prefix("/api/v1"), true},
		{"prefix is element-wise", prefix("/api"), prefix("/apis"), false},
		{"trailing slash ignored", prefix("/api/"), exact("/api"), true},
		{"exact paths differ", exact("/a"), exact("/b"), false},
		{"exact same", exact("/a"), exact("/a"), true},
		{"exact does not cover", exact("/api"), exact("/api/v1"), false},
		{"disjoint prefixes", prefix("/a"), prefix("/b"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pathsOverlap(tc.a, tc.b); got != tc.want {
				t.Errorf("pathsOverlap = %v, want %v", got, tc.want)
			}
			if got := pathsOverlap(tc.b, tc.a); got != tc.want {
				t.Errorf("pathsOverlap reversed = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewerResourceVersion(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"11", "10", true},
		{"10", "10", false},
		{"9", "10", false},
		{"abc", "10", true},
		{"abc", "abc", false},
	}
	for _, tc := range tests {
		if got := newerResourceVersion(tc.a, tc.b); got != tc.want {
			t.Errorf("newerResourceVersion(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestNextFree(t *testing.T) {
	x := NewIndex()
	for p := int32(30000); p < 30200; p++ {
		if p != 30150 {
			x.take(p, 1)
		}
	}
	x.take(30063, 1)
	none := func(int32) bool { return false }
	tests := []struct {
		name     string
		from, to int32
		excluded func(int32) bool
		want     int32
	}{
		{"jumps over whole taken words", 30000, 30300, none, 30150},
		{"first free after the run", 30151, 30300, none, 30200},
		{"nothing free in range", 30000, 30149, none, 0},
		{"excluded port skipped", 30000, 30300, func(p int32) bool { return p == 30150 }, 30200},
		{"free at the start", 29990, 30000, none, 29990},
		{"top of the port space", 65535, 65535, none, 65535},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := x.nextFree(tc.from, tc.to, tc.excluded); got != tc.want {
				t.Errorf("nextFree(%d, %d) = %d, want %d", tc.from, tc.to, got, tc.want)
			}
		})
	}
	x.take(30063, -1)
	x.take(30063, -1)
	if got := x.nextFree(30000, 30300, none); got != 30063 {
		t.Errorf("after release nextFree = %d, want 30063", got)
	}
}
