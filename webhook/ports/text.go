package ports

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/inventory"
)

// Formats are the output formats of Write.
var Formats = []string{"table", "json", "yaml"}

// maxNodes bounds the nodes a table row names; the others are counted.
const maxNodes = 3

// Write renders the report as a table (for people), JSON or YAML.
func Write(w io.Writer, r *Report, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "yaml":
		b, err := yaml.Marshal(r)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "table", "":
		var b strings.Builder
		if err := writeTable(&b, r); err != nil {
			return err
		}
		// Empty last cells leave padding behind.
		var out strings.Builder
		for line := range strings.Lines(b.String()) {
			out.WriteString(strings.TrimRight(line, " \n"))
			out.WriteByte('\n')
		}
		_, err := io.WriteString(w, out.String())
		return err
	}
	return fmt.Errorf("unknown output format %q (want table, json or yaml)", format)
}

// errWriter keeps the first error of a series of writes.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func writeTable(w io.Writer, r *Report) error {
	ew := &errWriter{w: w}
	tw := tabwriter.NewWriter(ew.w, 0, 4, 2, ' ', 0)
	tw2 := &errWriter{w: tw}
	section := func(title, header string, n int) bool {
		tw2.printf("%s\n", title)
		if n == 0 {
			tw2.printf("  (none)\n\n")
			return false
		}
		tw2.printf("  %s\n", header)
		return true
	}
	if section("HOST PORTS", "PORT\tHOST IP\tNODES\tHOLDER\tOBJECTS\tCONFLICT", len(r.HostPorts)) {
		for _, h := range r.HostPorts {
			tw2.printf("  %d/%s\t%s\t%s\t%s\t%d\t%s\n", h.Port, h.Protocol, hostIP(h.HostIP), nodesText(h.HostPortHolder),
				holderText(h.Holder), h.Objects, hostPortNote(h))
		}
		tw2.printf("\n")
	}
	if section("NODE PORTS", "PORT\tSERVICE\tCONFLICT", len(r.NodePorts)) {
		for _, n := range r.NodePorts {
			tw2.printf("  %d/%s\t%s\t%s\n", n.Port, n.Protocol, holderText(n.Holder), mark(n.Conflict))
		}
		tw2.printf("\n")
	}
	if section("INGRESS HOSTS", "HOST\tPATH\tNAMESPACE\tINGRESS\tCONFLICT", len(r.Hosts)) {
		for _, h := range r.Hosts {
			tw2.printf("  %s\t%s\t%s\t%s\t%s\n", h.Host, pathText(h.HostHolder), h.Holder.Namespace, nameText(h.Holder), mark(h.Conflict))
		}
		tw2.printf("\n")
	}
	if tw2.err != nil {
		return tw2.err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	ew.printf("GRANTS (node port range %d-%d)\n", r.NodePortRange.From, r.NodePortRange.To)
	if len(r.Grants) == 0 {
		ew.printf("  (none)\n")
	}
	for _, g := range r.Grants {
		if err := writeGrant(ew, g); err != nil {
			return err
		}
	}
	ew.printf("\nCONFLICTS\n")
	if len(r.Conflicts) == 0 {
		ew.printf("  (none)\n")
	}
	for _, c := range r.Conflicts {
		ew.printf("  %s\n", ConflictText(c))
	}
	return ew.err
}

func writeGrant(ew *errWriter, g Grant) error {
	ew.printf("  %s (%s)\n", g.Config.Name, grantHead(g))
	if a := allowsText(g.Config); a != "" {
		ew.printf("    allows: %s\n", a)
	}
	tw := tabwriter.NewWriter(ew.w, 0, 4, 2, ' ', 0)
	tw2 := &errWriter{w: tw}
	for _, k := range []struct {
		name string
		u    *inventory.PortUsage
	}{{"hostPorts", g.HostPorts}, {"nodePorts", g.NodePorts}} {
		if k.u == nil {
			continue
		}
		tw2.printf("    %s\tgranted %d\tused %d\tfree %d\t\n", k.name, k.u.Granted, k.u.Used, k.u.Free)
		for _, r := range k.u.Ranges {
			next := ""
			if len(r.NextFree) > 0 {
				next = "next free " + joinInts(r.NextFree)
			}
			tw2.printf("      %s\tgranted %d\tused %d\tfree %d\t%s\n", r.Range, r.Granted, r.Used, r.Free, next)
		}
	}
	if tw2.err != nil {
		return tw2.err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, u := range g.InUse {
		note := ""
		if u.Outside {
			note = "; outside the grant's namespaces"
		}
		ew.printf("    in use: %s %d: %s (%s%s)\n", u.Range, u.Port, holderText(u.Holder), u.Holder.Claim, note)
	}
	for _, h := range g.Hosts {
		ew.printf("    host: %s%s by %s%s\n", h.Host, pathText(h.HostHolder), holderText(h.Holder), conflictNote(h.Conflict))
	}
	return ew.err
}

// grantHead says to whom the grant applies and until when.
func grantHead(g Grant) string {
	var parts []string
	s := g.Config.Subjects
	for _, l := range []struct {
		what  string
		names []string
	}{{"namespaces", s.Namespaces}, {"service accounts", s.ServiceAccounts}, {"users", s.Users}, {"groups", s.Groups}} {
		if len(l.names) > 0 {
			parts = append(parts, l.what+" "+strings.Join(l.names, ", "))
		}
	}
	switch {
	case g.Expired:
		parts = append(parts, "EXPIRED "+g.Config.Expires)
	case g.Config.Expires != "":
		parts = append(parts, "expires "+g.Config.Expires)
	default:
		parts = append(parts, "no expiry")
	}
	return strings.Join(parts, "; ")
}

// allowsText lists what a grant allows.
func allowsText(g policies.Grant) string {
	var parts []string
	if g.HostNetwork {
		parts = append(parts, "hostNetwork")
	}
	list := func(what string, items []string) {
		if len(items) > 0 {
			parts = append(parts, what+" "+strings.Join(items, ", "))
		}
	}
	list("hostPorts", g.HostPorts)
	list("nodePorts", g.NodePorts)
	if lb := g.LoadBalancer; lb != nil && lb.Allowed {
		s := "loadBalancer"
		if len(lb.Classes) > 0 {
			s += " (classes " + strings.Join(lb.Classes, ", ") + ")"
		}
		if lb.SourceRangesRequired {
			s += " (source ranges required)"
		}
		parts = append(parts, s)
	}
	list("externalIPs", g.ExternalIPs)
	list("ingressDomains", g.IngressDomains)
	list("ingressClasses", g.IngressClasses)
	return strings.Join(parts, "; ")
}

// ConflictText renders a conflict on one line.
func ConflictText(c inventory.StandingConflict) string {
	where := ""
	switch {
	case c.Host != "":
		where = "host " + c.Host + " path " + c.Path
	case c.Rule == policies.RuleNodePortConflicts:
		where = "nodePort " + strconv.Itoa(c.Port)
	default:
		where = "hostPort " + strconv.Itoa(c.Port) + "/" + c.Protocol
	}
	if c.Node != "" {
		where += " on node " + c.Node
	}
	return fmt.Sprintf("%s: %s: %s (%s) and %s (%s)", c.Rule, where,
		holderText(c.Holders[0]), c.Holders[0].Claim, holderText(c.Holders[1]), c.Holders[1].Claim)
}

func holderText(h policies.Holder) string {
	if h.Pending {
		return h.String() + " (admitted, not stored yet)"
	}
	return h.String()
}

func nameText(h policies.Holder) string {
	if h.Pending {
		return h.Name + " (admitted, not stored yet)"
	}
	return h.Name
}

func hostIP(ip string) string {
	if ip == "" {
		return "*"
	}
	return ip
}

// nodesText says where a holder holds a host port: on the nodes its
// selector selects (every node without one), and on the nodes its pods run on.
func nodesText(h inventory.HostPortHolder) string {
	var parts []string
	if h.AnyNode {
		if len(h.NodeSelectors) == 0 {
			parts = append(parts, "every node")
		} else {
			parts = append(parts, "nodes with "+strings.Join(h.NodeSelectors, " or "))
		}
	}
	if n := len(h.Nodes); n > 0 {
		s := strings.Join(h.Nodes[:min(n, maxNodes)], ",")
		if n > maxNodes {
			s += fmt.Sprintf(" +%d more", n-maxNodes)
		}
		if h.AnyNode {
			s = "pods on " + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func pathText(h inventory.HostHolder) string {
	if h.Exact {
		return h.Path + " (exact)"
	}
	return h.Path
}

func hostPortNote(h HostPort) string {
	switch {
	case h.Conflict && h.InNodePortRange:
		return "CONFLICT; in the NodePort range"
	case h.Conflict:
		return "CONFLICT"
	case h.InNodePortRange:
		return "in the NodePort range"
	}
	return ""
}

func mark(conflict bool) string {
	if conflict {
		return "CONFLICT"
	}
	return ""
}

func conflictNote(conflict bool) string {
	if conflict {
		return " (CONFLICT)"
	}
	return ""
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
