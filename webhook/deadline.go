package webhook

import (
	"context"
	"net/http"
	"time"
)

// WithRequestDeadline bounds each review by the time the apiserver waits for
// it: the apiserver sends its webhook timeout as the query parameter timeout
// (`/validate?timeout=5s`), and an answer after it is lost, the request then
// failing by the failure policy. The context of the review ends margin before
// that (at least half the timeout is left), so that the rules' evaluation
// (which respects the context) ends in time to answer.
func WithRequestDeadline(next http.Handler, margin time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		timeout, err := time.ParseDuration(r.URL.Query().Get("timeout"))
		if err != nil || timeout <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		budget := max(timeout-margin, timeout/2)
		ctx, cancel := context.WithTimeout(r.Context(), budget)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
