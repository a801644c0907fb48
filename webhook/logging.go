package webhook

import (
	"slices"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// LogConstructor gives each review controller-runtime's request fields
// (object, namespace, user, request id), but only when something is logged:
// zap encodes the fields of WithValues at once, and most reviews log nothing.
// Use it as admission.Webhook.LogConstructor.
func LogConstructor(base logr.Logger, req *admission.Request) logr.Logger {
	if base.GetSink() == nil {
		return admission.DefaultLogConstructor(base, req)
	}
	return admission.DefaultLogConstructor(base.WithSink(&lazySink{sink: base.GetSink()}), req)
}

// lazySink keeps the values of WithValues until a line is written.
type lazySink struct {
	sink   logr.LogSink
	values []any
}

var (
	_ logr.LogSink          = (*lazySink)(nil)
	_ logr.CallDepthLogSink = (*lazySink)(nil)
)

func (s *lazySink) Init(info logr.RuntimeInfo) { s.sink.Init(info) }

func (s *lazySink) Enabled(level int) bool { return s.sink.Enabled(level) }

func (s *lazySink) Info(level int, msg string, kv ...any) {
	s.flushed().Info(level, msg, kv...)
}

func (s *lazySink) Error(err error, msg string, kv ...any) {
	s.flushed().Error(err, msg, kv...)
}

func (s *lazySink) WithValues(kv ...any) logr.LogSink {
	return &lazySink{sink: s.sink, values: append(slices.Clip(s.values), kv...)}
}

func (s *lazySink) WithName(name string) logr.LogSink {
	return &lazySink{sink: s.sink.WithName(name), values: s.values}
}

// WithCallDepth keeps the caller that the wrapped sink reports right.
func (s *lazySink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := s.sink.(logr.CallDepthLogSink); ok {
		return &lazySink{sink: cd.WithCallDepth(depth), values: s.values}
	}
	return s
}

// flushed is the wrapped sink with the kept values, one frame deeper for the caller.
func (s *lazySink) flushed() logr.LogSink {
	sink := s.sink
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		sink = cd.WithCallDepth(1)
	}
	if len(s.values) > 0 {
		sink = sink.WithValues(s.values...)
	}
	return sink
}
