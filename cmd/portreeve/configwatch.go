package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/webhook/review"
)

// configWatcher reloads the policy configuration file and the custom modules
// of --policy-dir when they change. A configuration or a module set that does
// not parse, validate or compile never replaces the last good one: the error
// is logged (with every key path, or file, line and reason), counted, shown
// by portreeve_config_last_reload_successful or
// portreeve_policy_last_reload_successful and on /readyz/config or
// /readyz/policies, while the last good engine keeps serving. The aggregate
// /readyz stays ready meanwhile: Portreeve serves. (At start-up there is no
// last good set: serve refuses to start, see loadPolicySet.)
type configWatcher struct {
	opts     *serveOptions
	reviewer *review.Reviewer
	onError  func(policies.RuleError)

	configReloads *prometheus.CounterVec
	policyReloads *prometheus.CounterVec
	configOK      prometheus.Gauge
	policyOK      prometheus.Gauge
	customModules prometheus.Gauge

	mu sync.Mutex
	// good is the set the reviewer serves.
	good *policySet
	// lastConfig and lastModules are what was last read from disk.
	lastConfig  []byte
	lastModules map[string]string
	configErr   error
	policyErr   error
	// configReadErr and policyReadErr are set while a file cannot be read.
	configReadErr error
	policyReadErr error
}

func newConfigWatcher(o *serveOptions, good *policySet, r *review.Reviewer, onError func(policies.RuleError), reg prometheus.Registerer) (*configWatcher, error) {
	w := &configWatcher{
		opts:        o,
		reviewer:    r,
		onError:     onError,
		good:        good,
		lastConfig:  good.configBytes,
		lastModules: good.modules,
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_config_reloads_total",
			Help: "Reloads of the policy configuration by result (success, failure).",
		}, []string{"result"}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portreeve_policy_reloads_total",
			Help: "Reloads of the custom Rego modules of --policy-dir by result (success, failure).",
		}, []string{"result"}),
		configOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_config_last_reload_successful",
			Help: "1 when the last load of the policy configuration file succeeded, 0 when it failed (the last good configuration serves).",
		}),
		policyOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_policy_last_reload_successful",
			Help: "1 when the custom modules on disk are the ones served, 0 while they are rejected (the last good set serves).",
		}),
		customModules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portreeve_policy_custom_modules",
			Help: "Number of custom Rego modules in the set being served.",
		}),
	}
	w.configOK.Set(1)
	w.policyOK.Set(1)
	w.customModules.Set(float64(len(good.modules)))
	for _, c := range []prometheus.Collector{w.configReloads, w.policyReloads, w.configOK, w.policyOK, w.customModules} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Start polls the files until ctx ends (manager.Runnable). Files are read
// whole each time, so a ConfigMap's symlink swap is seen as one change.
func (w *configWatcher) Start(ctx context.Context) error {
	if w.opts.ConfigPath == "" && w.opts.PolicyDir == "" {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(w.opts.ConfigPollInterval)
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
	log := ctrl.Log.WithName("policy")
	var config []byte
	var readConfigErr error
	if w.opts.ConfigPath != "" {
		config, readConfigErr = readPolicyFile(w.opts.ConfigPath)
	}
	modules, readModulesErr := readPolicyDir(w.opts.PolicyDir)

	w.mu.Lock()
	defer w.mu.Unlock()
	configChanged := readConfigErr == nil && !bytes.Equal(config, w.lastConfig)
	modulesChanged := readModulesErr == nil && !maps.Equal(modules, w.lastModules)
	w.reportReadError(log, "config", readConfigErr, &w.configReadErr, w.configErr, w.configReloads, w.configOK)
	w.reportReadError(log, "policies", readModulesErr, &w.policyReadErr, w.policyErr, w.policyReloads, w.policyOK)
	if !configChanged && !modulesChanged {
		return
	}
	if configChanged {
		w.lastConfig = config
	}
	next := *w.good
	modulesOK, configOK := false, false
	if modulesChanged {
		w.lastModules = modules
		// Judge the modules alone first, so that their errors are theirs.
		if _, err := policies.New(ctx, policies.Options{Modules: modules}); err != nil {
			w.policyFailed(err)
			log.Error(err, "custom rules rejected; the last good set keeps serving", "dir", w.opts.PolicyDir)
		} else {
			next.modules, modulesOK = modules, true
		}
	}
	// The configuration may name rules that only the new modules declare:
	// one that is not served yet is judged again with them.
	if configChanged || (modulesChanged && !bytes.Equal(w.lastConfig, w.good.configBytes)) {
		cfg, err := parseConfig(w.lastConfig, next.modules)
		if err != nil {
			w.configFailed(err)
			log.Error(err, "configuration not applied; the last good configuration keeps serving", "file", w.opts.ConfigPath)
		} else {
			next.config, next.configBytes, configOK = cfg, w.lastConfig, true
		}
	}
	newModules := !maps.Equal(next.modules, w.good.modules)
	newConfig := !bytes.Equal(next.configBytes, w.good.configBytes)
	if newModules || newConfig {
		e, err := w.opts.newEngine(ctx, &next, w.onError)
		if err != nil {
			// Each part compiled alone: together they disagree, e.g. the
			// configuration names a rule the new modules dropped.
			if newModules {
				w.policyFailed(err)
			} else {
				w.configFailed(err)
			}
			log.Error(err, "policy set not applied; the last good set keeps serving")
			return
		}
		w.reviewer.SetEngine(e)
		w.good = &next
	}
	// What was read now serves (it may be what served already: a file
	// restored after a rejected edit).
	if modulesOK {
		w.policyErr = nil
		w.policyReloads.WithLabelValues("success").Inc()
		w.policyOK.Set(1)
		w.customModules.Set(float64(len(next.modules)))
		log.Info("custom rules reloaded", "dir", w.opts.PolicyDir, "modules", len(next.modules), "rules", strings.Join(policies.CustomRuleIDs(next.modules), ","))
	}
	if configOK {
		w.configErr = nil
		w.configReloads.WithLabelValues("success").Inc()
		w.configOK.Set(1)
		log.Info("configuration reloaded", "file", w.opts.ConfigPath)
	}
}

func (w *configWatcher) configFailed(err error) {
	w.configErr = err
	w.configReloads.WithLabelValues("failure").Inc()
	w.configOK.Set(0)
}

func (w *configWatcher) policyFailed(err error) {
	w.policyErr = err
	w.policyReloads.WithLabelValues("failure").Inc()
	w.policyOK.Set(0)
}

// reportReadError records an unreadable file or folder once per distinct
// error. judged is the last error of what it holds: once it is readable
// again and that was accepted, the gauge ok returns to 1.
func (w *configWatcher) reportReadError(log logr.Logger, what string, err error, last *error, judged error, reloads *prometheus.CounterVec, ok prometheus.Gauge) {
	if err == nil {
		if *last != nil && judged == nil {
			ok.Set(1)
		}
		*last = nil
		return
	}
	if *last != nil && (*last).Error() == err.Error() {
		return
	}
	*last = err
	reloads.WithLabelValues("failure").Inc()
	ok.Set(0)
	log.Error(err, what+" unreadable; the last good set keeps serving")
}

// ReadyCheck is the "config" readiness check; see readyDetail.
func (w *configWatcher) ReadyCheck(req *http.Request) error {
	return w.readyDetail(req, "config", func() error { return errors.Join(w.configReadErr, w.configErr) })
}

// PoliciesReadyCheck is the "policies" readiness check; see readyDetail.
func (w *configWatcher) PoliciesReadyCheck(req *http.Request) error {
	return w.readyDetail(req, "policies", func() error { return errors.Join(w.policyReadErr, w.policyErr) })
}

// readyDetail keeps Portreeve ready while a rejected file waits for a fix
// (the last good set serves), but answers the check's own endpoint
// (/readyz/<name>) with 500 and the reason, so that the error can be seen
// without reading the logs.
func (w *configWatcher) readyDetail(req *http.Request, name string, lastErr func() error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reviewer.Engine() == nil {
		return errors.New("no policy set loaded")
	}
	err := lastErr()
	if err == nil || strings.Trim(req.URL.Path, "/") != name {
		return nil
	}
	return fmt.Errorf("rejected, the last good set keeps serving: %w", err)
}
