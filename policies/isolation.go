package policies

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// RuleError is a rule that failed to evaluate for one input.
type RuleError struct {
	Rule          string        `json:"rule"`
	FailurePolicy FailurePolicy `json:"failurePolicy"`
	Err           error         `json:"-"`
	// Timeout is true when the rule failed because the evaluation's time
	// budget ran out (Err is then ErrBudget) rather than by an error of its own.
	Timeout bool `json:"timeout,omitempty"`
}

func (e RuleError) Error() string {
	return fmt.Sprintf("rule %s failed (failure policy %s): %v", e.Rule, e.FailurePolicy, e.Err)
}

// MarshalJSON adds the error text.
func (e RuleError) MarshalJSON() ([]byte, error) {
	msg := ""
	if e.Err != nil {
		msg = e.Err.Error()
	}
	timeout := ""
	if e.Timeout {
		timeout = `,"timeout":true`
	}
	return []byte(`{"rule":` + strconv.Quote(e.Rule) + `,"failurePolicy":` + strconv.Quote(string(e.FailurePolicy)) +
		`,"error":` + strconv.Quote(msg) + timeout + `}`), nil
}

// ErrBudget is the error of a rule that ran out of its evaluation time budget.
var ErrBudget = errors.New("evaluation time budget exceeded")

// errNoTime is ErrBudget before the evaluation could start.
var errNoTime = fmt.Errorf("%w: no time left to start", ErrBudget)

// isolationReserve is the share of the budget (a quarter) that the combined
// evaluation leaves for re-running the rules one by one when it runs out.
const isolationReserve = 4

// queryKind selects the findings or the rewrites.
type queryKind int

const (
	queryFindings queryKind = iota
	queryRewrites
)

// ruleQueries are the queries of one rule alone, prepared on first use.
type ruleQueries struct {
	once    [2]sync.Once
	queries [2]*prepared
	errs    [2]error
	// ranOut is set once the rule has run out of time alone: it is re-run
	// after the other custom rules from then on.
	ranOut atomic.Bool
}

// evalIsolated evaluates the plan of the input's family, the fast path. Only
// when that fails (or is undefined) does it evaluate the rules one by one, so
// that a failing rule fails alone. The whole call keeps to one time budget
// (see isolate). It returns an error only when ctx itself ends or the input
// is bad. The results read the input: call release once they are converted.
func (e *Engine) evalIsolated(ctx context.Context, in *Input, kind queryKind) (_ []tagged, _ map[string]error, release func(), _ error) {
	now := time.Now()
	res := e.grants.resolve(in, now)
	v, release := in.value(&res)
	family := in.Family()
	p := e.plans[kind][family]
	out, ok, err := p.eval(ctx, e, v, now, &res)
	if ok {
		return out, nil, release, nil
	}
	if ctx.Err() != nil {
		release()
		return nil, nil, nil, fmt.Errorf("evaluate rules: %w", err)
	}
	out, failed, err := e.isolate(ctx, e.isolationGroups(p, &res), kind, v, now, out[:0])
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	return out, failed, release, nil
}

// The groups of rules isolate re-runs, in order.
const (
	groupBuiltin = iota // the built-in rules
	groupCustom         // the custom rules that have never run out of time alone
	groupSlow           // the custom rules that have
	groups
)

// isolationGroups sorts the rules whose output the plan reads, and the
// request is not exempt from, into the groups isolate re-runs them in; each
// group is sorted by id.
func (e *Engine) isolationGroups(p *plan, res *resolved) [groups][]RuleInfo {
	var out [groups][]RuleInfo
	for _, r := range e.rules {
		if res.exempts(r.ID) || !slices.ContainsFunc(p.slots, func(s slot) bool { return s.rule == r.ID }) {
			continue
		}
		g := groupCustom
		switch {
		case r.Builtin:
			g = groupBuiltin
		case e.perRule[r.ID].ranOut.Load():
			g = groupSlow
		}
		out[g] = append(out[g], r)
	}
	return out
}

// isolate evaluates rules one at a time, group after group, appending their
// output to out, until the end of the budget of the evaluation that started
// at now. A built-in rule may use all the time left; a custom rule an even
// share of it with the rules of its group still to run (time a rule does not
// use passes on), so the rules known to be slow get only what the others
// leave. A rule still running when its time is up, or that the budget leaves
// no time to start, fails with ErrBudget: however many rules are slow, the
// whole evaluation keeps to its one budget.
func (e *Engine) isolate(ctx context.Context, todo [groups][]RuleInfo, kind queryKind, v ast.Value, now time.Time, out []tagged) ([]tagged, map[string]error, error) {
	end := e.budgetEnd(now)
	var failed map[string]error
	for g, group := range todo {
		for i, r := range group {
			var ruleEnd time.Time // no limit
			started := time.Now()
			if !end.IsZero() {
				left := end.Sub(started)
				if g != groupBuiltin {
					left /= time.Duration(len(group) - i)
				}
				ruleEnd = started.Add(left)
			}
			var one []*ast.Term
			err := errNoTime
			if ruleEnd.IsZero() || ruleEnd.After(started) {
				one, err = e.evalRule(ctx, r.ID, kind, v, now, ruleEnd)
			}
			switch {
			case err == nil:
				out = appendTagged(out, r.ID, one)
			case ctx.Err() != nil:
				return nil, nil, fmt.Errorf("evaluate rules: %w", err)
			case errors.Is(err, errNoTime):
				failed = addFailure(failed, r.ID, fmt.Errorf("%w: the request's %s budget ran out before the rule could run alone", ErrBudget, e.budget))
			case errors.Is(err, ErrBudget):
				e.perRule[r.ID].ranOut.Store(true)
				failed = addFailure(failed, r.ID, fmt.Errorf("%w: still running after %s alone (its share of the request's %s budget)", ErrBudget,
					time.Since(started).Round(time.Millisecond), e.budget))
			default:
				failed = addFailure(failed, r.ID, err)
			}
		}
	}
	return out, failed, nil
}

// appendTagged appends the output of one rule, each element tagged with the
// set its "type" names.
func appendTagged(out []tagged, rule string, terms []*ast.Term) []tagged {
	for _, t := range terms {
		set := ""
		if obj, ok := t.Value.(ast.Object); ok {
			if ty := obj.Get(ast.InternedTerm("type")); ty != nil {
				s, _ := ty.Value.(ast.String)
				set = string(s)
			}
		}
		out = append(out, tagged{rule: rule, set: set, raw: t})
	}
	return out
}

// evalRule evaluates the output of one rule alone, until end (no limit when zero).
func (e *Engine) evalRule(ctx context.Context, id string, kind queryKind, v ast.Value, now, end time.Time) ([]*ast.Term, error) {
	q, err := e.ruleQuery(id, kind)
	if err != nil {
		return nil, err
	}
	return e.evalSet(ctx, q, v, now, end)
}

// budgetEnd is the end of the budget of an evaluation that started at now
// (zero when there is no budget).
func (e *Engine) budgetEnd(now time.Time) time.Time {
	if e.budget <= 0 {
		return time.Time{}
	}
	return now.Add(e.budget)
}

func (e *Engine) ruleQuery(id string, kind queryKind) (*prepared, error) {
	rq := e.perRule[id]
	if rq == nil {
		return nil, fmt.Errorf("unknown rule %q", id)
	}
	rq.once[kind].Do(func() {
		fn := "rule_findings"
		if kind == queryRewrites {
			fn = "rule_rewrites"
		}
		rq.queries[kind], rq.errs[kind] = e.prepare(fmt.Sprintf("data.portreeve.main.%s(%s)", fn, strconv.Quote(id)))
	})
	return rq.queries[kind], rq.errs[kind]
}

func addFailure(failed map[string]error, id string, err error) map[string]error {
	if failed == nil {
		failed = map[string]error{}
	}
	if _, seen := failed[id]; !seen {
		failed[id] = err
	}
	return failed
}

// ruleError builds the RuleError of a failed rule and reports it.
func (e *Engine) ruleError(id string, err error) RuleError {
	re := RuleError{Rule: id, FailurePolicy: FailDeny, Err: err, Timeout: errors.Is(err, ErrBudget)}
	for _, r := range e.rules {
		if r.ID == id {
			re.FailurePolicy = r.FailurePolicy
		}
	}
	if e.onError != nil {
		e.onError(re)
	}
	return re
}
