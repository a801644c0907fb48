package policies

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
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
	queries [2]*prepared
	errs    [2]error
}

// evalIsolated evaluates the plan of the input's family, the fast path. Only
// when that fails (or is undefined) does it evaluate the rules one by one, so
// that a failing rule fails alone. It returns an error only when ctx itself
// ends or the input is bad. The results read the input: call release once
// they are converted.
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
	var failed map[string]error
	out = out[:0]
	for _, r := range e.rules {
		if r.Mode == ModeOff || !r.appliesTo(family) {
			continue
		}
		q, err := e.ruleQuery(r.ID, kind)
		if err == nil {
			var one []*ast.Term
			one, err = e.evalSet(ctx, q, v, now)
			for _, t := range one {
				set := ""
				if obj, ok := t.Value.(ast.Object); ok {
					if ty := obj.Get(ast.InternedTerm("type")); ty != nil {
						s, _ := ty.Value.(ast.String)
						set = string(s)
					}
				}
				out = append(out, tagged{rule: r.ID, set: set, raw: t})
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				release()
				return nil, nil, nil, fmt.Errorf("evaluate rules: %w", err)
			}
			failed = addFailure(failed, r.ID, err)
		}
	}
	return out, failed, release, nil
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

// prepared is a query compiled once against the engine's rules. The engine
// evaluates it with topdown itself, not through rego: that spares every
// evaluation rego's metrics, result sets and conversion of the whole result
// to Go values.
type prepared struct {
	body ast.Body
	qc   ast.QueryCompiler
}

// resultVar holds the value of a prepared query.
const resultVar = ast.Var("portreeve_result")

func (e *Engine) prepare(query string) (*prepared, error) {
	body, err := ast.ParseBodyWithOpts(string(resultVar)+" = "+query, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, err
	}
	qc := e.compiler.QueryCompiler().WithEnablePrintStatements(false)
	compiled, err := qc.Compile(body)
	if err != nil {
		return nil, err
	}
	return &prepared{body: compiled, qc: qc}, nil
}

// evalValue evaluates a query within the time budget, at time now, and
// returns its value, nil when undefined.
func (e *Engine) evalValue(ctx context.Context, q *prepared, v ast.Value, now time.Time) (_ ast.Value, err error) {
	// The input's maps convert to AST as the rules read them, and the
	// conversion panics on a value JSON cannot hold (only a Go caller can
	// pass one): that fails the evaluation, not the process.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("input holds a value that is not JSON: %v", r)
		}
	}()
	// One cancellation for both the caller's context and the time budget.
	cancel := topdown.NewCancel()
	var b *budgetTimer
	if e.budget > 0 {
		b = startBudget(e.budget, cancel)
		defer b.stop()
	}
	if ctx.Done() != nil {
		defer context.AfterFunc(ctx, cancel.Cancel)()
	}
	txn, err := e.store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer e.store.Abort(ctx, txn)
	vc := newFlatCache()
	defer vc.release()
	tq := topdown.NewQuery(q.body).
		WithQueryCompiler(q.qc).
		WithCompiler(e.compiler).
		WithStore(e.store).
		WithTransaction(txn).
		WithInput(ast.NewTerm(v)).
		WithTime(now).
		WithMetrics(noMetrics).
		WithIndexing(true).
		WithEarlyExit(true).
		WithVirtualCache(vc).
		WithRequestMetadata(noMetadata).
		WithCancel(cancel)
	if e.tracer != nil {
		tq = tq.WithQueryTracer(e.tracer)
	}
	var out ast.Value
	err = tq.Iter(ctx, func(qr topdown.QueryResult) error {
		if t := qr[resultVar]; t != nil && out == nil {
			out = t.Value
		}
		return nil
	})
	if err != nil {
		if b != nil && b.ranOut() && ctx.Err() == nil {
			return nil, fmt.Errorf("%w (%s)", ErrBudget, e.budget)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return nil, err
	}
	return out, nil
}

var noMetrics = metrics.NoOp()

// budgetTimer cancels an evaluation that runs out of its time budget. Its
// timer is reused from evaluation to evaluation.
type budgetTimer struct {
	t      *time.Timer
	mu     sync.Mutex
	cancel topdown.Cancel
	over   bool
}

var budgetPool sync.Pool

func startBudget(d time.Duration, c topdown.Cancel) *budgetTimer {
	b, _ := budgetPool.Get().(*budgetTimer)
	if b == nil {
		b = &budgetTimer{}
		b.t = time.AfterFunc(time.Hour, b.fire)
		b.t.Stop()
	}
	b.mu.Lock()
	b.cancel, b.over = c, false
	b.mu.Unlock()
	b.t.Reset(d)
	return b
}

func (b *budgetTimer) fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.over = true
	if b.cancel != nil {
		b.cancel.Cancel()
	}
}

func (b *budgetTimer) ranOut() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.over
}

// stop ends the budget. A timer that fired, or is firing, is not reused: its
// function may still run.
func (b *budgetTimer) stop() {
	if b.t.Stop() {
		b.mu.Lock()
		b.cancel = nil
		b.mu.Unlock()
		budgetPool.Put(b)
	}
}

// noMetadata is the request metadata of every evaluation: none (topdown
// would otherwise make an empty map each time; builtins only read it).
var noMetadata = map[string]any{}

// evalSet evaluates a query whose value is a set, within the time budget.
func (e *Engine) evalSet(ctx context.Context, q *prepared, v ast.Value, now time.Time) ([]*ast.Term, error) {
	val, err := e.evalValue(ctx, q, v, now)
	if err != nil || val == nil {
		return nil, err
	}
	set, ok := val.(ast.Set)
	if !ok {
		return nil, fmt.Errorf("rules returned %s, want a set", ast.ValueName(val))
	}
	return set.Slice(), nil
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
