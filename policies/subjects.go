package policies

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	namespaces      []*glob.Pattern
	serviceAccounts []account
	users, groups   []string
	// expiresNs is the end of validity in Unix nanoseconds, 0 for never.
	expiresNs int64
}

func compileSubjects(s Subjects, expires string) (subjects, error) {
	out := subjects{users: s.Users, groups: s.Groups}
	for _, sa := range s.ServiceAccounts {
		ns, name, _ := strings.Cut(sa, "/")
		out.serviceAccounts = append(out.serviceAccounts, account{ns, name})
	}
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

// account is a service account, namespace/name.
type account struct{ namespace, name string }

// serviceAccountOf reads the service account of a user name
// system:serviceaccount:<namespace>:<name>.
func serviceAccountOf(username string) (account, bool) {
	rest, ok := strings.CutPrefix(username, "system:serviceaccount:")
	if !ok {
		return account{}, false
	}
	ns, name, ok := strings.Cut(rest, ":")
	if !ok || strings.Contains(name, ":") {
		return account{}, false
	}
	return account{ns, name}, true
}

// requester is who a request is about: its namespace, the requesting user,
// and the service accounts of the requester and of the pod.
type requester struct {
	namespace, username string
	groups              []string
	accounts            [2]account
	nAccounts           int
}

func newRequester(in *Input) requester {
	r := requester{namespace: in.Namespace, username: in.User.Username, groups: in.User.Groups}
	if a, ok := serviceAccountOf(in.User.Username); ok {
		r.accounts[r.nAccounts] = a
		r.nAccounts++
	}
	if in.Pod != nil {
		r.accounts[r.nAccounts] = account{in.Namespace, in.Pod.ServiceAccount}
		r.nAccounts++
	}
	return r
}

// matches is true when every subject list that is set covers the requester.
func (s *subjects) matches(r *requester) bool {
	if len(s.namespaces) > 0 && !slices.ContainsFunc(s.namespaces, func(g *glob.Pattern) bool { return g.Match(r.namespace) }) {
		return false
	}
	if len(s.serviceAccounts) > 0 && !slices.ContainsFunc(r.accounts[:r.nAccounts], func(a account) bool { return slices.Contains(s.serviceAccounts, a) }) {
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
	// values caches input.grants by grantsKey; cached counts them.
	values sync.Map
	cached atomic.Int64
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

// grantsKey says which grants (by index, up to 64) are active and which expired.
type grantsKey struct{ active, expired uint64 }

// grantsValue is input.grants, {"active", "expired"}, with the grants of
// those indices. Requests that resolve to the same grants share it (AST
// values are never written once built), for up to 64 grants and up to
// maxGrantSets sets of them.
func (ix *grantIndex) grantsValue(key grantsKey, active, expired []int) ast.Value {
	cacheable := len(ix.grants) <= 64
	if cacheable {
		if v, ok := ix.values.Load(key); ok {
			return v.(ast.Value)
		}
	}
	terms := func(indices []int) *ast.Term {
		ts := make([]*ast.Term, len(indices))
		for i, x := range indices {
			ts[i] = ix.terms[x]
		}
		return ast.ArrayTerm(ts...)
	}
	v := ast.NewObject(ast.Item(keyActive, terms(active)), ast.Item(keyExpired, terms(expired)))
	if cacheable && ix.cached.Load() < maxGrantSets {
		if _, loaded := ix.values.LoadOrStore(key, v); !loaded {
			ix.cached.Add(1)
		}
	}
	return v
}

const maxGrantSets = 4096

// resolved is what the grant index says about one request.
type resolved struct {
	// value is input.grants: the grants that apply ("active"), and those
	// that would apply had they not expired ("expired").
	value ast.Value
	// exempt lists the rules an active exemption lifts; all is true when
	// one lifts every rule.
	exempt []string
	all    bool
}

func (ix *grantIndex) resolve(in *Input, now time.Time) resolved {
	r := newRequester(in)
	nowNs := now.UnixNano()
	var key grantsKey
	var active, expired []int
	for i := range ix.grants {
		if !ix.grants[i].matches(&r) {
			continue
		}
		if ix.grants[i].expired(nowNs) {
			expired = append(expired, i)
			key.expired |= 1 << i
		} else {
			active = append(active, i)
			key.active |= 1 << i
		}
	}
	out := resolved{value: ix.grantsValue(key, active, expired)}
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

// exempts is true when the request is exempt from the rule with this id.
func (r *resolved) exempts(id string) bool { return r.all || slices.Contains(r.exempt, id) }
