package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Snapshot is the part of the host a node stack changes: kernel settings,
// network devices, addresses, routes, packet filter rules, mounts, cgroups,
// the node's processes and the well-known folders kubelet, containerd and
// the CNI plugins write to whatever their configuration says. Take one
// before a node starts and compare it with one taken after the teardown:
// the difference is what the node left behind.
type Snapshot struct {
	Sysctls   map[string]string   `json:"sysctls"`
	Links     []string            `json:"links"`
	Addrs     []string            `json:"addrs"`
	Routes    []string            `json:"routes"`
	IPRules   []string            `json:"ipRules"`
	Nftables  []string            `json:"nftables"`
	Legacy    []string            `json:"legacyIPTables"`
	Mounts    []string            `json:"mounts"`
	Cgroups   []string            `json:"cgroups"`
	Processes []string            `json:"processes"`
	Paths     map[string][]string `json:"paths"`
	Modules   []string            `json:"modules"`
}

// sysctlRoots are the /proc/sys folders compared. Settings of single
// network devices are left out (they go with the device); the devices are
// compared themselves.
var sysctlRoots = []string{"kernel", "vm", "fs", "user", "net/core", "net/ipv4", "net/ipv6", "net/bridge", "net/netfilter", "net/unix"}

// volatileSysctls change on their own (counters, random values).
var volatileSysctls = []string{
	"kernel.ns_last_pid", "kernel.random.", "kernel.pty.nr", "kernel.tainted",
	"fs.dentry-state", "fs.file-nr", "fs.inode-nr", "fs.inode-state", "fs.aio-nr", "fs.quota.",
	"net.netfilter.nf_conntrack_count", "net.ipv4.tcp_mem", "net.ipv4.udp_mem",
	"vm.stat_refresh", "vm.drop_caches", "vm.compact_memory",
}

// watchedPaths are host folders and files a node writes to no matter where
// its own state lives: kubelet's device-plugin socket and container log
// links, containerd's shim sockets, the CNI result cache, the xtables lock.
var watchedPaths = []string{
	"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/etc/kubernetes", "/var/lib/kube-proxy",
	"/run/containerd", "/var/lib/containerd", "/opt/containerd", "/run/runc",
	"/var/lib/cni", "/etc/cni", "/opt/cni", "/run/netns", "/run/xtables.lock",
}

// nodeProcessNames are the comm names of a node's daemons (comm is cut to
// 15 characters: containerd-shim-runc-v2 reads containerd-shim).
var nodeProcessNames = []string{"kubelet", "containerd", "containerd-shim", "kube-proxy", "kube-scheduler", "runc"}

// TakeSnapshot reads the host state. It needs root for the packet filter.
func TakeSnapshot(ctx context.Context) (*Snapshot, error) {
	s := &Snapshot{Paths: map[string][]string{}}
	var err error
	if s.Sysctls, err = readSysctls(); err != nil {
		return nil, err
	}
	if s.Links, err = ipLines(ctx, "-o", "link", "show"); err != nil {
		return nil, err
	}
	for i, l := range s.Links {
		s.Links[i] = linkName(l)
	}
	if s.Addrs, err = ipLines(ctx, "-o", "addr", "show"); err != nil {
		return nil, err
	}
	for i, a := range s.Addrs {
		s.Addrs[i] = addrKey(a)
	}
	for _, fam := range []string{"-4", "-6"} {
		r, err := ipLines(ctx, fam, "-o", "route", "show", "table", "all")
		if err != nil {
			return nil, err
		}
		s.Routes = append(s.Routes, r...)
		rules, err := ipLines(ctx, fam, "rule", "show")
		if err != nil {
			return nil, err
		}
		s.IPRules = append(s.IPRules, rules...)
	}
	for i, r := range s.Routes {
		s.Routes[i] = expiresRE.ReplaceAllString(r, "")
	}
	if s.Nftables, err = nftRuleset(ctx); err != nil {
		return nil, err
	}
	s.Legacy = legacyRules(ctx)
	if s.Mounts, err = mountPoints(); err != nil {
		return nil, err
	}
	s.Cgroups = cgroupDirs()
	s.Processes = nodeProcesses("")
	for _, p := range watchedPaths {
		s.Paths[p] = listPath(p)
	}
	if b, err := os.ReadFile("/proc/modules"); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				s.Modules = append(s.Modules, f[0])
			}
		}
	}
	for _, l := range [][]string{s.Links, s.Addrs, s.Routes, s.IPRules, s.Mounts, s.Cgroups, s.Processes, s.Modules} {
		sort.Strings(l)
	}
	return s, nil
}

// Diff lists what differs between s (before) and after, one line each.
func (s *Snapshot) Diff(after *Snapshot) []string {
	var d []string
	keys := make([]string, 0, len(s.Sysctls))
	for k := range s.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if a, ok := after.Sysctls[k]; ok && a != s.Sysctls[k] && !volatile(k) {
			d = append(d, fmt.Sprintf("sysctl %s = %q, was %q", k, a, s.Sysctls[k]))
		}
	}
	d = append(d, setDiff("network device", s.Links, after.Links)...)
	d = append(d, setDiff("address", s.Addrs, after.Addrs)...)
	d = append(d, setDiff("route", s.Routes, after.Routes)...)
	d = append(d, setDiff("ip rule", s.IPRules, after.IPRules)...)
	d = append(d, setDiff("nftables", s.Nftables, after.Nftables)...)
	d = append(d, setDiff("iptables-legacy", s.Legacy, after.Legacy)...)
	d = append(d, setDiff("mount", s.Mounts, after.Mounts)...)
	d = append(d, setDiff("cgroup", s.Cgroups, after.Cgroups)...)
	d = append(d, setDiff("process", s.Processes, after.Processes)...)
	d = append(d, setDiff("kernel module", s.Modules, after.Modules)...)
	paths := make([]string, 0, len(s.Paths))
	for p := range s.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		before, now := s.Paths[p], after.Paths[p]
		switch {
		case before == nil && now != nil:
			d = append(d, fmt.Sprintf("path %s exists, did not before", p))
		case before != nil && now == nil:
			d = append(d, fmt.Sprintf("path %s is gone", p))
		default:
			d = append(d, setDiff("path "+p+":", before, now)...)
		}
	}
	return d
}

// setDiff reports entries added to or removed from a sorted-or-not list
// (as multisets are not needed here, sets do).
func setDiff(what string, before, after []string) []string {
	var d []string
	for _, a := range after {
		if !slices.Contains(before, a) {
			d = append(d, fmt.Sprintf("%s added: %s", what, a))
		}
	}
	for _, b := range before {
		if !slices.Contains(after, b) {
			d = append(d, fmt.Sprintf("%s removed: %s", what, b))
		}
	}
	return d
}

func volatile(key string) bool {
	for _, v := range volatileSysctls {
		if key == v || (strings.HasSuffix(v, ".") && strings.HasPrefix(key, v)) {
			return true
		}
	}
	return false
}

func readSysctls() (map[string]string, error) {
	out := map[string]string{}
	for _, root := range sysctlRoots {
		base := filepath.Join("/proc/sys", root)
		err := filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				if path == base {
					return filepath.SkipDir // not on this kernel
				}
				return nil
			}
			rel := strings.TrimPrefix(path, "/proc/sys/")
			if d.IsDir() {
				// Per-device settings go with the device.
				if strings.Contains(rel, "/conf/") || strings.Contains(rel, "/neigh/") {
					if name := filepath.Base(rel); name != "all" && name != "default" {
						return filepath.SkipDir
					}
				}
				return nil
			}
			key := strings.ReplaceAll(rel, "/", ".")
			if volatile(key) {
				return nil
			}
			info, err := d.Info()
			if err != nil || info.Mode().Perm()&0o444 == 0 {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil // write-only or not readable here
			}
			out[key] = strings.Join(strings.Fields(string(b)), " ")
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeSysctl sets /proc/sys/<key with dots as slashes>.
func writeSysctl(key, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")), []byte(value+"\n"), 0o644)
}

var expiresRE = regexp.MustCompile(` expires \d+sec`)

func ipLines(ctx context.Context, args ...string) ([]string, error) {
	out, err := run(ctx, "ip", args...)
	if err != nil {
		return nil, err
	}
	return nonEmptyLines(out), nil
}

// linkName turns "4: veth1@if3: <...> ..." into "veth1".
func linkName(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	name := strings.TrimSuffix(f[1], ":")
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name = name[:i]
	}
	return name
}

// addrKey turns "2: eth0    inet 192.0.2.2/24 brd ... scope global eth0\ ..." into
// "eth0 inet 192.0.2.2/24" (lifetimes change on their own).
func addrKey(line string) string {
	f := strings.Fields(line)
	if len(f) < 4 {
		return line
	}
	return f[1] + " " + f[2] + " " + f[3]
}

var counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// nftRuleset returns `nft list ruleset` (which shows iptables-nft rules
// too) with counters blanked, one rule or header per line.
func nftRuleset(ctx context.Context) ([]string, error) {
	if _, err := os.Stat("/usr/sbin/nft"); err != nil {
		return nil, nil
	}
	out, err := run(ctx, "nft", "list", "ruleset")
	if err != nil {
		return nil, err
	}
	return withContext(counterRE.ReplaceAllString(out, "counter"), "table ", "chain "), nil
}

// withContext prefixes each line with the table and chain it is in, so the
// lines can be compared as a set.
func withContext(out string, prefixes ...string) []string {
	var lines []string
	ctx := make([]string, len(prefixes))
	for _, l := range nonEmptyLines(out) {
		t := strings.TrimSpace(l)
		if t == "}" {
			continue
		}
		for i, p := range prefixes {
			if strings.HasPrefix(t, p) {
				ctx[i] = strings.TrimSuffix(t, " {")
				for j := i + 1; j < len(ctx); j++ {
					ctx[j] = ""
				}
			}
		}
		lines = append(lines, strings.TrimSpace(strings.Join(ctx, " | ")+" | "+t))
	}
	return lines
}

// legacyRules returns iptables-legacy-save output of both families (tables
// of the old backend that a kube-proxy picking it would fill).
func legacyRules(ctx context.Context) []string {
	var lines []string
	for _, bin := range []string{"iptables-legacy-save", "ip6tables-legacy-save"} {
		if _, err := os.Stat(filepath.Join("/usr/sbin", bin)); err != nil {
			continue
		}
		out, err := run(ctx, bin)
		if err != nil {
			continue
		}
		table := ""
		for _, l := range nonEmptyLines(out) {
			switch {
			case strings.HasPrefix(l, "#"), l == "COMMIT":
			case strings.HasPrefix(l, "*"):
				table = l
			default:
				if strings.HasPrefix(l, ":") {
					l = strings.Fields(l)[0] // drop policy counters
				}
				lines = append(lines, bin+" "+table+" "+l)
			}
		}
	}
	return lines
}

// mountPoints returns "mountpoint fstype" of the host's mounts.
func mountPoints() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range nonEmptyLines(string(b)) {
		f := strings.Fields(l)
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		out = append(out, unescapeMount(f[4])+" "+f[sep+1])
	}
	return out, nil
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupDirs returns "<hierarchy>/<dir>" for the top-level cgroups of every
// mounted hierarchy (kubelet creates kubepods in each).
func cgroupDirs() []string {
	var out []string
	hier, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hier {
		if !h.IsDir() {
			continue
		}
		entries, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", h.Name()))
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, h.Name()+"/"+e.Name())
			}
		}
	}
	// cgroup v2 only: the root itself is the hierarchy.
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		for _, h := range hier {
			if h.IsDir() {
				out = append(out, "unified-root/"+h.Name())
			}
		}
	}
	return out
}

// nodeProcesses returns "pid comm" of running node daemons (by name) and of
// every process in a kubepods cgroup (containers). With dir set, processes
// whose command line mentions dir count too (shims of a containerd whose
// socket lives there).
func nodeProcesses(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil || pid == self {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			continue
		}
		comm, state := parseStat(string(stat))
		if state == "Z" || state == "X" {
			continue // exited, only not reaped yet
		}
		match := slices.Contains(nodeProcessNames, comm)
		if !match {
			if cg, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup")); err == nil && strings.Contains(string(cg), "/kubepods") {
				match = true
			}
		}
		if !match && dir != "" {
			if cmdline, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline")); err == nil && strings.Contains(string(cmdline), dir) {
				match = true
			}
		}
		if match {
			out = append(out, pid+" "+comm)
		}
	}
	return out
}

// parseStat returns comm and state from /proc/<pid>/stat.
func parseStat(stat string) (comm, state string) {
	open, closing := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || closing < open {
		return "", ""
	}
	comm = stat[open+1 : closing]
	rest := strings.Fields(stat[closing+1:])
	if len(rest) > 0 {
		state = rest[0]
	}
	return comm, state
}

// listPath returns nil if p does not exist, else p's entries (relative
// names, two levels deep, at most 500).
func listPath(p string) []string {
	st, err := os.Lstat(p)
	if err != nil {
		return nil
	}
	out := []string{"."}
	if !st.IsDir() {
		return out
	}
	_ = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil || path == p {
			return nil
		}
		rel, _ := filepath.Rel(p, path)
		out = append(out, rel)
		if len(out) >= 500 {
			return filepath.SkipAll
		}
		if d.IsDir() && strings.Count(rel, "/") >= 1 {
			return filepath.SkipDir
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimRight(l, " \t"))
		}
	}
	return out
}
