package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// configWatcher reloads the policy configuration file when it changes. A
// configuration that does not parse, validate or compile never replaces the
// last good one: the error is logged, counted and shown on /readyz details,
// while the last good engine keeps serving.
type configWatcher struct {
	path     string
	interval time.Duration
	reviewer *review.Reviewer
	reloads  *prometheus.CounterVec

	mu      sync.Mutex
	last    []byte
	lastErr error
}

func newConfigWatcher(path string, interval time.Duration, r *review.Reviewer, reg prometheus.Registerer) (*configWatcher, error) {
	w := &configWatcher{
		path:     path,
		interval: interval,
		reviewer: r,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_config_reloads_total",
			Help: "Reloads of the policy configuration by result (success, failure).",
		}, []string{"result"}),
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		w.last = b
	}
	return w, reg.Register(w.reloads)
}

// Start polls the file until ctx ends (manager.Runnable). The file is read
// whole each time so a ConfigMap's symlink swap is seen as one change.
func (w *configWatcher) Start(ctx context.Context) error {
	if w.path == "" {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.check(ctx)
		}
	}
}

func (w *configWatcher) check(ctx context.Context) {
	log := ctrl.Log.WithName("config")
	b, err := os.ReadFile(w.path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil && bytes.Equal(b, w.last) {
		return
	}
	if err == nil {
		var cfg *policies.Config
		cfg, err = policies.ParseConfig(b, customRuleIDs(w.reviewer.Engine()))
		if err == nil {
			var e *policies.Engine
			if e, err = policies.New(ctx, policies.Options{Config: cfg}); err == nil {
				w.reviewer.SetEngine(e)
			}
		}
	}
	w.last = b
	w.lastErr = err
	if err != nil {
		w.reloads.WithLabelValues("failure").Inc()
		log.Error(err, "configuration not applied; the last good configuration keeps serving", "file", w.path)
		return
	}
	w.reloads.WithLabelValues("success").Inc()
	log.Info("configuration reloaded", "file", w.path)
}

// ReadyCheck reports a rejected configuration. Portreeve stays ready (it
// serves the last good configuration); the detail shows on /readyz?verbose.
func (w *configWatcher) ReadyCheck(_ *http.Request) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reviewer.Engine() == nil {
		return errors.New("no configuration loaded")
	}
	return nil
}

func customRuleIDs(e *policies.Engine) []string {
	var ids []string
	for _, r := range e.Rules() {
		if !r.Builtin {
			ids = append(ids, r.ID)
		}
	}
	return ids
}
