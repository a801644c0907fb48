package policies

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
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

// evalIsolated evaluates all rules at once, the fast path. Only when that
// fails does it evaluate them one by one, so that a failing rule fails alone.
// It returns an error only when ctx itself ends or the input is bad.
func (e *Engine) evalIsolated(ctx context.Context, in *Input, kind queryKind) ([]any, map[string]error, error) {
	v, err := in.value()
	if err != nil {
		return nil, nil, fmt.Errorf("convert input: %w", err)
	}
	q := e.findings
	if kind == queryRewrites {
		q = e.rewrites
	}
	family := in.family()
	if fq, ok := e.byFamily[family]; ok {
		q = fq.findings
		if kind == queryRewrites {
			q = fq.rewrites
		}
	}
	rs, err := e.evalSet(ctx, q, v)
	if err == nil {
		return rs, nil, nil
	}
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("evaluate rules: %w", err)
	}
	var failed map[string]error
	rs = rs[:0]
	for _, r := range e.rules {
		if r.Mode == ModeOff || !r.appliesTo(family) {
			continue
		}
		q, err := e.ruleQuery(ctx, r.ID, kind)
		if err == nil {
			var one []any
			one, err = e.evalSet(ctx, q, v)
			rs = append(rs, one...)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("evaluate rules: %w", err)
			}
			failed = addFailure(failed, r.ID, err)
		}
	}
	return rs, failed, nil
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

// evalSet evaluates a query whose value is a set, within the time budget.
func (e *Engine) evalSet(ctx context.Context, q rego.PreparedEvalQuery, v ast.Value) ([]any, error) {
	if e.budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, e.budget, ErrBudget)
		defer cancel()
	}
	opts := []rego.EvalOption{rego.EvalParsedInput(v)}
	if e.tracer != nil {
		opts = append(opts, rego.EvalQueryTracer(e.tracer))
	}
	rs, err := q.Eval(ctx, opts...)
	if err != nil {
		if errors.Is(context.Cause(ctx), ErrBudget) {
			return nil, fmt.Errorf("%w (%s)", ErrBudget, e.budget)
		}
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	set, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fmt.Errorf("rules returned %T, want a set", rs[0].Expressions[0].Value)
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
