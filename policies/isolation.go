package policies

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// RuleError is a rule that failed to evaluate for one input.
type RuleError struct {
	Rule          string        `json:"rule"`
	FailurePolicy FailurePolicy `json:"failurePolicy"`
	Err           error         `json:"-"`
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
	return []byte(`{"rule":` + strconv.Quote(e.Rule) + `,"failurePolicy":` + strconv.Quote(string(e.FailurePolicy)) +
		`,"error":` + strconv.Quote(msg) + `}`), nil
}

// ErrBudget is the error of a rule that ran out of its evaluation time budget.
var ErrBudget = errors.New("evaluation time budget exceeded")

// queryKind selects the findings or the rewrites.
type queryKind int

const (
	queryFindings queryKind = iota
	queryRewrites
)

// ruleQueries are the queries of one rule alone, prepared on first use.
type ruleQueries struct {
	once    [2]sync.Once
	queries [2]rego.PreparedEvalQuery
	errs    [2]error
}

// evalIsolated evaluates the plan of the input's family, the fast path. Only
// when that fails (or is undefined) does it evaluate the rules one by one, so
// that a failing rule fails alone. It returns an error only when ctx itself
// ends or the input is bad.
func (e *Engine) evalIsolated(ctx context.Context, in *Input, kind queryKind) ([]tagged, map[string]error, error) {
	res := e.grants.resolve(in, time.Now())
	v := in.value(&res)
	family := in.family()
	p := e.plans[kind][family]
	out, ok, err := p.eval(ctx, e, v, &res)
	if ok {
		return out, nil, nil
	}
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("evaluate rules: %w", err)
	}
	var failed map[string]error
	out = out[:0]
	for _, r := range e.rules {
		if r.Mode == ModeOff || !r.appliesTo(family) {
			continue
		}
		q, err := e.ruleQuery(ctx, r.ID, kind)
		if err == nil {
			var one []any
			one, err = e.evalSet(ctx, q, v)
			for _, raw := range one {
				m, _ := raw.(map[string]any)
				out = append(out, tagged{rule: r.ID, set: str(m["type"]), raw: raw})
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("evaluate rules: %w", err)
			}
			failed = addFailure(failed, r.ID, err)
		}
	}
	return out, failed, nil
}

func (e *Engine) ruleQuery(ctx context.Context, id string, kind queryKind) (rego.PreparedEvalQuery, error) {
	rq := e.perRule[id]
	if rq == nil {
		return rego.PreparedEvalQuery{}, fmt.Errorf("unknown rule %q", id)
	}
	rq.once[kind].Do(func() {
		fn := "rule_findings"
		if kind == queryRewrites {
			fn = "rule_rewrites"
		}
		rq.queries[kind], rq.errs[kind] = rego.New(
			rego.Query(fmt.Sprintf("data.portreeve.main.%s(%s)", fn, strconv.Quote(id))),
			rego.Compiler(e.compiler),
			rego.Store(e.store),
			rego.Capabilities(Capabilities()),
		).PrepareForEval(ctx)
	})
	return rq.queries[kind], rq.errs[kind]
}

// evalValue evaluates a query within the time budget and returns the value
// of its first expression, nil when undefined.
func (e *Engine) evalValue(ctx context.Context, q rego.PreparedEvalQuery, v ast.Value) (_ any, err error) {
	// The input's maps convert to AST as the rules read them, and the
	// conversion panics on a value JSON cannot hold (only a Go caller can
	// pass one): that fails the evaluation, not the process.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("input holds a value that is not JSON: %v", r)
		}
	}()
	// One cancellation for both the caller's context and the time budget,
	// rather than rego's goroutine per evaluation.
	cancel := topdown.NewCancel()
	var overBudget atomic.Bool
	if e.budget > 0 {
		t := time.AfterFunc(e.budget, func() { overBudget.Store(true); cancel.Cancel() })
		defer t.Stop()
	}
	if ctx.Done() != nil {
		defer context.AfterFunc(ctx, cancel.Cancel)()
	}
	vc := newFlatCache()
	defer vc.release()
	opts := []rego.EvalOption{rego.EvalParsedInput(v), rego.EvalExternalCancel(cancel), rego.EvalVirtualCache(vc)}
	if e.tracer != nil {
		opts = append(opts, rego.EvalQueryTracer(e.tracer))
	}
	rs, err := q.Eval(ctx, opts...)
	if err != nil {
		if overBudget.Load() && ctx.Err() == nil {
			return nil, fmt.Errorf("%w (%s)", ErrBudget, e.budget)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	return rs[0].Expressions[0].Value, nil
}

// evalSet evaluates a query whose value is a set, within the time budget.
func (e *Engine) evalSet(ctx context.Context, q rego.PreparedEvalQuery, v ast.Value) ([]any, error) {
	val, err := e.evalValue(ctx, q, v)
	if err != nil || val == nil {
		return nil, err
	}
	set, ok := val.([]any)
	if !ok {
		return nil, fmt.Errorf("rules returned %T, want a set", val)
	}
	return set, nil
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
	re := RuleError{Rule: id, FailurePolicy: FailDeny, Err: err}
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
