package policies

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gobwas/glob"
	"github.com/open-policy-agent/opa/v1/ast"
)

// Which grants and exemptions apply to a request depends on the request alone,
// never on a rule, so the engine settles it in Go, once per request, however
// many rules and grants there are. The rules read the result in input.grants
// through data.portreeve.lib.grants, which resolves inputs written by hand
// (Rego tests) with the same semantics; TestSubjectsMatchRego holds the two together.

// subjects are the compiled subjects of one grant or exemption.
type subjects struct {
	namespaces                     []*glob.Pattern
	serviceAccounts, users, groups []string
	// expiresNs is the end of validity in Unix nanoseconds, 0 for never.
	expiresNs int64
}

func compileSubjects(s Subjects, expires string) (subjects, error) {
	out := subjects{serviceAccounts: s.ServiceAccounts, users: s.Users, groups: s.Groups}
	for _, p := range s.Namespaces {
		// As glob.match(p, [], ns) compiles it: "." is the separator.
		g, err := glob.Compile(p, '.')
		if err != nil {
			return subjects{}, fmt.Errorf("namespace pattern %q: %w", p, err)
		}
		out.namespaces = append(out.namespaces, g)
	}
	if expires != "" {
		t, err := parseExpires(expires)
		if err != nil {
			return subjects{}, err
		}
		out.expiresNs = t.UnixNano()
	}
	return out, nil
}

// requester is who a request is about: its namespace, the requesting user,
// and the service accounts (namespace/name) of the requester and of the pod.
type requester struct {
	namespace, username string
	groups              []string
	accounts            []string
}

func newRequester(in *Input) requester {
	r := requester{namespace: in.Namespace, username: in.User.Username, groups: in.User.Groups}
	if rest, ok := strings.CutPrefix(in.User.Username, "system:serviceaccount:"); ok {
		if ns, name, ok := strings.Cut(rest, ":"); ok && !strings.Contains(name, ":") {
			r.accounts = append(r.accounts, ns+"/"+name)
		}
	}
	if in.Pod != nil {
		r.accounts = append(r.accounts, in.Namespace+"/"+in.Pod.ServiceAccount)
	}
	return r
}

// matches is true when every subject list that is set covers the requester.
func (s *subjects) matches(r *requester) bool {
	if len(s.namespaces) > 0 && !slices.ContainsFunc(s.namespaces, func(g *glob.Pattern) bool { return g.Match(r.namespace) }) {
		return false
	}
	if len(s.serviceAccounts) > 0 && !slices.ContainsFunc(r.accounts, func(a string) bool { return slices.Contains(s.serviceAccounts, a) }) {
		return false
	}
	if len(s.users) > 0 && !slices.Contains(s.users, r.username) {
		return false
	}
	if len(s.groups) > 0 && !slices.ContainsFunc(r.groups, func(g string) bool { return slices.Contains(s.groups, g) }) {
		return false
	}
	return true
}

func (s *subjects) expired(nowNs int64) bool { return s.expiresNs > 0 && nowNs > s.expiresNs }

// grantIndex holds the configuration's grants and exemptions compiled for
// matching, with each grant's AST value as data.portreeve.config holds it.
type grantIndex struct {
	grants     []subjects
	terms      []*ast.Term
	exemptions []subjects
	exemptIDs  [][]string
}

func newGrantIndex(cfg *Config, data map[string]any) (*grantIndex, error) {
	ix := &grantIndex{}
	raw, _ := data["grants"].([]any)
	for i, g := range cfg.Grants {
		s, err := compileSubjects(g.Subjects, g.Expires)
		if err != nil {
			return nil, fmt.Errorf("grants[%d]: %w", i, err)
		}
		v, err := ast.InterfaceToValue(raw[i])
		if err != nil {
			return nil, fmt.Errorf("grants[%d]: %w", i, err)
		}
		ix.grants = append(ix.grants, s)
		ix.terms = append(ix.terms, ast.NewTerm(v))
	}
	for i, e := range cfg.Exemptions {
		s, err := compileSubjects(e.Subjects, e.Expires)
		if err != nil {
			return nil, fmt.Errorf("exemptions[%d]: %w", i, err)
		}
		ix.exemptions = append(ix.exemptions, s)
		ix.exemptIDs = append(ix.exemptIDs, e.Rules)
	}
	return ix, nil
}

// resolved is what the grant index says about one request.
type resolved struct {
	// active and expired are the grants that apply, and those that would
	// apply had they not expired, as input.grants.active and .expired.
	active, expired *ast.Array
	// exempt lists the rules an active exemption lifts; all is true when
	// one lifts every rule.
	exempt []string
	all    bool
}

func (ix *grantIndex) resolve(in *Input, now time.Time) resolved {
	r := newRequester(in)
	nowNs := now.UnixNano()
	var active, expired []*ast.Term
	for i := range ix.grants {
		if !ix.grants[i].matches(&r) {
			continue
		}
		if ix.grants[i].expired(nowNs) {
			expired = append(expired, ix.terms[i])
		} else {
			active = append(active, ix.terms[i])
		}
	}
	out := resolved{active: emptyArray, expired: emptyArray}
	if len(active) > 0 {
		out.active = ast.NewArray(active...)
	}
	if len(expired) > 0 {
		out.expired = ast.NewArray(expired...)
	}
	for i := range ix.exemptions {
		if !ix.exemptions[i].matches(&r) || ix.exemptions[i].expired(nowNs) {
			continue
		}
		if len(ix.exemptIDs[i]) == 0 {
			out.all = true
		}
		out.exempt = append(out.exempt, ix.exemptIDs[i]...)
	}
	return out
}

// emptyArray is shared: AST values are never written once built.
var emptyArray = ast.NewArray()

// exempts is true when the request is exempt from the rule with this id.
func (r *resolved) exempts(id string) bool { return r.all || slices.Contains(r.exempt, id) }
