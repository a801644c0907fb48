package webhook

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestWithRequestDeadline(t *testing.T) {
	tests := []struct {
		query string
		want  time.Duration // 0: no deadline
	}{
		{"", 0},
		{"?timeout=bad", 0},
		{"?timeout=5s", 4500 * time.Millisecond},
		{"?timeout=30s", 29500 * time.Millisecond},
		{"?timeout=600ms", 300 * time.Millisecond}, // half the timeout at least
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			var got time.Duration
			h := WithRequestDeadline(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				if d, ok := r.Context().Deadline(); ok {
					got = time.Until(d)
				}
			}), 500*time.Millisecond)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/validate"+tc.query, nil))
			if tc.want == 0 && got != 0 || tc.want != 0 && (got > tc.want || got < tc.want-time.Second) {
				t.Errorf("deadline in %v, want %v", got, tc.want)
			}
		})
	}
}
