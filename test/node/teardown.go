package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// teardown undoes what a node stack described by r may have changed on the
// host: it kills the processes left (containers, shims, daemons whose
// command line names r.Dir), unmounts everything under r.Dir and the host
// folders that did not exist before, removes new cgroups, network devices,
// the blackhole route and new nftables tables, puts every kernel setting
// back, removes new host files and r.Dir. It can be run again and again;
// it goes on after an error and returns them all.
func teardown(ctx context.Context, r *record) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(killLeftovers(r))
	add(unmountAll(r))
	add(removeCgroups(r))
	add(removeNetwork(ctx, r))
	add(removeRules(ctx, r))
	add(restoreSysctls(r))
	add(removePaths(r))
	if r.Dir != "" && strings.HasPrefix(filepath.Base(r.Dir), dirPrefix) {
		if err := os.RemoveAll(r.Dir); err != nil {
			add(fmt.Errorf("remove %s: %w", r.Dir, err))
		}
	}
	return errors.Join(errs...)
}

// killLeftovers SIGKILLs processes in kubepods cgroups and processes whose
// command line names r.Dir, until none is left (15 s at most).
func killLeftovers(r *record) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var left []string
		for _, p := range nodeProcesses(r.Dir) {
			if slices.Contains(r.Before.Processes, p) || !mentionsOrContained(p, r.Dir) {
				continue
			}
			left = append(left, p)
			pid, _, _ := strings.Cut(p, " ")
			if n, err := strconv.Atoi(pid); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still running: %s", strings.Join(left, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mentionsOrContained: the process runs in a kubepods cgroup or its command
// line names dir. A kubelet or containerd of someone else is left alone.
func mentionsOrContained(p, dir string) bool {
	pid, _, _ := strings.Cut(p, " ")
	if cg, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup")); err == nil && strings.Contains(string(cg), "/kubepods") {
		return true
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
	return err == nil && dir != "" && strings.Contains(string(cmdline), dir)
}

// ownedRoots are the folders whose mounts teardown removes: r.Dir, and the
// host folders a node mounts into that did not exist before it.
func ownedRoots(r *record) []string {
	roots := []string{}
	if r.Dir != "" {
		roots = append(roots, r.Dir)
	}
	for _, p := range []string{"/var/lib/kubelet", "/run/containerd", "/run/netns", "/var/lib/containerd"} {
		if r.Before.Paths[p] == nil {
			roots = append(roots, p)
		}
	}
	return roots
}

func unmountAll(r *record) error {
	roots := ownedRoots(r)
	for pass := 0; pass < 10; pass++ {
		mounts, err := mountPoints()
		if err != nil {
			return err
		}
		var mine []string
		for _, m := range mounts {
			mp := m[:strings.LastIndexByte(m, ' ')]
			for _, root := range roots {
				if mp == root || strings.HasPrefix(mp, root+"/") {
					mine = append(mine, mp)
					break
				}
			}
		}
		if len(mine) == 0 {
			return nil
		}
		// Deepest first; MNT_DETACH for a mount still busy.
		sort.Slice(mine, func(i, j int) bool { return len(mine[i]) > len(mine[j]) })
		for _, mp := range mine {
			if err := syscall.Unmount(mp, 0); err != nil {
				_ = syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
	}
	mounts, _ := mountPoints()
	var left []string
	for _, m := range mounts {
		for _, root := range roots {
			if strings.HasPrefix(m, root+"/") || strings.HasPrefix(m, root+" ") {
				left = append(left, m)
			}
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("mounts left: %s", strings.Join(left, ", "))
	}
	return nil
}

// removeCgroups removes the kubelet's cgroup trees (kubepods in every
// hierarchy) that appeared since the snapshot, deepest first. Other new
// cgroups are left alone (the host check reports them).
func removeCgroups(r *record) error {
	var errs []error
	for _, cg := range cgroupDirs() {
		if slices.Contains(r.Before.Cgroups, cg) || !strings.HasPrefix(filepath.Base(cg), "kubepods") || strings.HasPrefix(cg, "unified-root/") {
			continue
		}
		root := filepath.Join("/sys/fs/cgroup", cg)
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := rmdirCgroup(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func rmdirCgroup(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		// Busy: kill what is still inside, then try again.
		if b, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs")); rerr == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, perr := strconv.Atoi(f); perr == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

// removeNetwork deletes the devices that appeared since the snapshot and
// are the node's (its bridge, its veth pair, the pods' veths) and the
// blackhole route.
func removeNetwork(ctx context.Context, r *record) error {
	var errs []error
	links, err := ipLines(ctx, "-o", "link", "show")
	if err != nil {
		return err
	}
	// The pods' veths are the ones enslaved to the node's bridge (those of
	// pods whose network namespace is gone have gone with it).
	var podVeths []string
	if r.Bridge != "" && slices.ContainsFunc(links, func(l string) bool { return linkName(l) == r.Bridge }) {
		enslaved, _ := ipLines(ctx, "-o", "link", "show", "master", r.Bridge)
		for _, l := range enslaved {
			podVeths = append(podVeths, linkName(l))
		}
	}
	for _, l := range links {
		name := linkName(l)
		if slices.Contains(r.Before.Links, name) {
			continue
		}
		if name == r.Bridge || name == r.HostVeth || name == peerVeth(r.HostVeth) || slices.Contains(podVeths, name) {
			if _, err := run(ctx, "ip", "link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
				errs = append(errs, err)
			}
		}
	}
	if r.Block != "" && !slices.Contains(r.Before.Routes, "blackhole "+r.Block) {
		routes, err := ipLines(ctx, "-4", "route", "show", "type", "blackhole")
		if err != nil {
			errs = append(errs, err)
		}
		for _, rt := range routes {
			if f := strings.Fields(rt); len(f) > 1 && f[1] == r.Block {
				if _, err := run(ctx, "ip", "route", "del", "blackhole", r.Block); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// removeRules deletes nftables tables that did not exist before (kube-proxy's
// and portmap's iptables-nft tables, the guard table); in tables that did,
// and in the legacy backend, it removes the KUBE-* and CNI-* chains and the
// rules jumping to them.
func removeRules(ctx context.Context, r *record) error {
	var errs []error
	before := map[string]bool{}
	for _, l := range r.Before.Nftables {
		if t, _, _ := strings.Cut(l, " | "); strings.HasPrefix(t, "table ") {
			before[t] = true
		}
	}
	if _, err := os.Stat("/usr/sbin/nft"); err == nil {
		out, err := run(ctx, "nft", "list", "tables")
		if err != nil {
			errs = append(errs, err)
		}
		for _, t := range nonEmptyLines(out) {
			if before[strings.TrimSpace(t)] {
				continue
			}
			f := strings.Fields(t) // table <family> <name>
			if len(f) == 3 {
				if _, err := run(ctx, "nft", "delete", "table", f[1], f[2]); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, fam := range []string{"iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy"} {
		if _, err := os.Stat("/usr/sbin/" + fam); err != nil {
			continue
		}
		if err := removeChains(ctx, fam); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeChains deletes, in every table of one iptables binary, the rules
// that jump to KUBE-*/CNI-* chains and then those chains.
func removeChains(ctx context.Context, bin string) error {
	out, err := run(ctx, bin+"-save")
	if err != nil {
		return nil // no tables of this backend
	}
	var errs []error
	table := ""
	type rule struct{ table, spec string }
	var rules []rule
	chains := map[string][]string{}
	for _, l := range nonEmptyLines(out) {
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case strings.HasPrefix(l, ":"):
			name := strings.Fields(l[1:])[0]
			if ours(name) {
				chains[table] = append(chains[table], name)
			}
		case strings.HasPrefix(l, "-A "):
			f := strings.Fields(l)
			if len(f) > 1 && !ours(f[1]) && (strings.Contains(l, "-j KUBE-") || strings.Contains(l, "-j CNI-") || strings.Contains(l, "-g KUBE-") || strings.Contains(l, "-g CNI-")) {
				rules = append(rules, rule{table, strings.TrimPrefix(l, "-A ")})
			}
		}
	}
	for _, ru := range rules {
		args := append([]string{"-w", "-t", ru.table, "-D"}, splitRule(ru.spec)...)
		if _, err := run(ctx, bin, args...); err != nil {
			errs = append(errs, err)
		}
	}
	for t, cs := range chains {
		for _, c := range cs {
			_, _ = run(ctx, bin, "-w", "-t", t, "-F", c)
		}
		for _, c := range cs {
			if _, err := run(ctx, bin, "-w", "-t", t, "-X", c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func ours(chain string) bool {
	return strings.HasPrefix(chain, "KUBE-") || strings.HasPrefix(chain, "CNI-")
}

// splitRule splits an iptables-save rule into arguments, keeping quoted
// comments together.
func splitRule(spec string) []string {
	var args []string
	var cur strings.Builder
	inQuote := false
	for _, c := range spec {
		switch {
		case c == '"':
			inQuote = !inQuote
		case c == ' ' && !inQuote:
			if cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(c)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args
}

// restoreSysctls writes back every kernel setting that differs from the
// snapshot (kubelet sets vm.overcommit_memory, kernel.panic,
// kernel.panic_on_oops, kernel.keys.*; the bridge plugin ip_forward).
func restoreSysctls(r *record) error {
	now, err := readSysctls()
	if err != nil {
		return err
	}
	var errs []error
	keys := make([]string, 0, len(r.Before.Sysctls))
	for k := range r.Before.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		want := r.Before.Sysctls[k]
		if got, ok := now[k]; ok && got != want && !volatile(k) {
			if err := writeSysctl(k, want); err != nil {
				errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", k, want, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removePaths removes watched host paths that did not exist before, and new
// entries in those that did.
func removePaths(r *record) error {
	var errs []error
	for _, p := range watchedPaths {
		before := r.Before.Paths[p]
		now := listPath(p)
		if now == nil {
			continue
		}
		if before == nil {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		for _, rel := range now {
			if rel != "." && !strings.Contains(rel, "/") && !slices.Contains(before, rel) {
				if err := os.RemoveAll(filepath.Join(p, rel)); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func peerVeth(host string) string {
	if host == "" {
		return ""
	}
	return strings.TrimSuffix(host, "0") + "1"
}
