package policies

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
)

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

// evalValue evaluates the combined query of an evaluation that started at
// now (a plan), and returns its value, nil when undefined. It may use the
// budget less the reserve for isolating the rules if it runs out.
func (e *Engine) evalValue(ctx context.Context, q *prepared, v ast.Value, now time.Time) (ast.Value, error) {
	end := e.budgetEnd(now)
	if !end.IsZero() {
		end = end.Add(-e.budget / isolationReserve)
	}
	return e.evalUntil(ctx, q, v, now, end)
}

// evalUntil evaluates a query at time now, until end (no limit when zero),
// and returns its value, nil when undefined. The error is ErrBudget when end
// cuts it short (or leaves no time to start), and wraps ctx's error when ctx ends.
func (e *Engine) evalUntil(ctx context.Context, q *prepared, v ast.Value, now, end time.Time) (_ ast.Value, err error) {
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
	if !end.IsZero() {
		left := time.Until(end)
		if left <= 0 {
			return nil, errNoTime
		}
		b = startBudget(left, cancel)
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
			return nil, ErrBudget
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

// evalSet evaluates a query whose value is a set, until end (no limit when zero).
func (e *Engine) evalSet(ctx context.Context, q *prepared, v ast.Value, now, end time.Time) ([]*ast.Term, error) {
	val, err := e.evalUntil(ctx, q, v, now, end)
	if err != nil || val == nil {
		return nil, err
	}
	set, ok := val.(ast.Set)
	if !ok {
		return nil, fmt.Errorf("rules returned %s, want a set", ast.ValueName(val))
	}
	return set.Slice(), nil
}
