package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// probeOptions are the flags of `portreeve probe`.
type probeOptions struct {
	URL           string
	Address       string
	CAFile        string
	Paths         []string
	Namespace     string
	Timeout       time.Duration
	Wait          time.Duration
	ExpectFinding string
}

func newProbeCommand() *cobra.Command {
	o := &probeOptions{Paths: []string{"/validate"}, Namespace: "default", Timeout: 10 * time.Second, Wait: time.Minute}
	cmd := &cobra.Command{
		Use:   "probe --url https://HOST:PORT [flags]",
		Short: "Check that a running Portreeve answers admission reviews (the chart's helm test)",
		Long: "Sends each --path of the webhook at --url, over TLS verified with --ca-file, the AdmissionReview the apiserver would\n" +
			"send for a dry-run CREATE of a hostNetwork Pod in --namespace, and checks the answer: an AdmissionReview for the\n" +
			"same uid that allows the Pod, or denies it by a rule (403). An error answer (the review failed), another uid,\n" +
			"a TLS or connection failure, or no answer within --timeout fails the attempt; attempts are repeated until\n" +
			"--wait has passed. Nothing is created: the review is marked dryRun.\n" +
			"Exit status: 0 when every path answered, 1 when one did not, 2 on bad usage.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			return runProbe(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.URL, "url", o.URL, "base URL of the webhook server, e.g. https://portreeve.portreeve-system.svc:443")
	fs.StringVar(&o.Address, "address", o.Address, "connect to this host or IP instead of --url's host (on --url's port), still sending --url's host and checking the certificate for it: "+
		"the Service's IP from $(<SERVICE>_SERVICE_HOST) where Pods cannot resolve Service names")
	fs.StringVar(&o.CAFile, "ca-file", o.CAFile, "PEM CA bundle that signed the serving certificate (the chart's <fullname>-cert Secret, key ca.crt); read again on every attempt")
	fs.StringArrayVar(&o.Paths, "path", o.Paths, "webhook path to probe (repeatable): /validate, /mutate")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the probe Pod: one Portreeve reviews (not its own, not kube-system), which must exist")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "time one request may take (also sent as ?timeout=, as the apiserver does)")
	fs.DurationVar(&o.Wait, "wait", o.Wait, "keep trying for this long before failing (certificates and replicas may still be starting)")
	fs.StringVar(&o.ExpectFinding, "expect-finding", o.ExpectFinding, "also require, of every --path, a finding of this rule (a denial or a warning naming it), e.g. host-network with --path /validate")
	return cmd
}

func (o *probeOptions) validate() error {
	var errs []error
	u, err := url.Parse(o.URL)
	switch {
	case o.URL == "":
		errs = append(errs, errors.New("--url is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("--url: %w", err))
	case u.Scheme != "https" || u.Host == "":
		errs = append(errs, fmt.Errorf("--url must be https://HOST[:PORT], got %q", o.URL))
	}
	if len(o.Paths) == 0 {
		errs = append(errs, errors.New("--path: at least one"))
	}
	for _, p := range o.Paths {
		if !strings.HasPrefix(p, "/") {
			errs = append(errs, fmt.Errorf("--path must start with /, got %q", p))
		}
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace must not be empty"))
	}
	if o.Timeout <= 0 {
		errs = append(errs, errors.New("--timeout must be positive"))
	}
	if o.Wait < 0 {
		errs = append(errs, errors.New("--wait must not be negative"))
	}
	return errors.Join(errs...)
}

// runProbe probes every path until each answered or --wait has passed.
func runProbe(ctx context.Context, out io.Writer, o *probeOptions) error {
	deadline := time.Now().Add(o.Wait)
	for _, path := range o.Paths {
		for attempt := 1; ; attempt++ {
			verdict, err := probeOnce(ctx, o, path)
			if err == nil {
				fmt.Fprintf(out, "ok  %s: %s\n", path, verdict)
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				fmt.Fprintf(out, "FAIL %s: %v\n", path, err)
				return &exitError{code: 1, err: fmt.Errorf("%s%s did not answer as a webhook after %d attempts: %w", strings.TrimSuffix(o.URL, "/"), path, attempt, err)}
			}
			fmt.Fprintf(out, "retry %s: %v\n", path, err)
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
	return nil
}

// probeReview is the AdmissionReview of a dry-run CREATE of a hostNetwork Pod.
func probeReview(namespace, uid string) ([]byte, error) {
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "portreeve-probe", "namespace": namespace},
		"spec": map[string]any{
			"hostNetwork": true,
			"containers":  []any{map[string]any{"name": "probe", "image": "portreeve-probe"}},
		},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	dryRun := true
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:             types.UID(uid),
			Kind:            metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:        metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			RequestKind:     &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			RequestResource: &metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:            "portreeve-probe",
			Namespace:       namespace,
			Operation:       admissionv1.Create,
			UserInfo:        authenticationv1.UserInfo{Username: "portreeve:probe", Groups: []string{"system:authenticated"}},
			Object:          runtime.RawExtension{Raw: raw},
			DryRun:          &dryRun,
			Options:         runtime.RawExtension{Raw: []byte(`{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions","dryRun":["All"]}`)},
		},
	})
}

// probeClient trusts the CA file only (or the system roots without one).
func probeClient(o *probeOptions) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate (yet)", o.CAFile)
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}
	if o.Address != "" {
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort(o.Address, port))
		}
	}
	return &http.Client{Timeout: o.Timeout, Transport: tr}, nil
}

// probeOnce sends one review and says what the webhook answered.
func probeOnce(ctx context.Context, o *probeOptions, path string) (string, error) {
	client, err := probeClient(o)
	if err != nil {
		return "", err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	uid := hex.EncodeToString(id[:])
	body, err := probeReview(o.Namespace, uid)
	if err != nil {
		return "", err
	}
	u := strings.TrimSuffix(o.URL, "/") + path + "?timeout=" + url.QueryEscape(o.Timeout.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &review); err != nil {
		return "", fmt.Errorf("not an AdmissionReview: %w", err)
	}
	return judgeProbeAnswer(&review, uid, o.ExpectFinding)
}

// judgeProbeAnswer accepts an AdmissionReview answer for uid that allows the
// Pod or denies it by a rule, and describes it.
func judgeProbeAnswer(review *admissionv1.AdmissionReview, uid, expectFinding string) (string, error) {
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		return "", fmt.Errorf("answered %s %s, want admission.k8s.io/v1 AdmissionReview", review.APIVersion, review.Kind)
	}
	r := review.Response
	if r == nil {
		return "", errors.New("the AdmissionReview has no response")
	}
	if string(r.UID) != uid {
		return "", fmt.Errorf("answered uid %q, sent %q", r.UID, uid)
	}
	var verdict string
	message := ""
	if r.Result != nil {
		message = r.Result.Message
	}
	if r.Allowed {
		verdict = "allowed"
		if message != "" {
			verdict += " (" + message + ")"
		}
	} else {
		// Rules deny with 403; any other code is a review that failed (400, 500).
		if r.Result == nil || r.Result.Code != http.StatusForbidden {
			code := int32(0)
			if r.Result != nil {
				code = r.Result.Code
			}
			return "", fmt.Errorf("the review failed (code %d): %s", code, message)
		}
		verdict = "denied: " + message
	}
	for _, w := range r.Warnings {
		verdict += "\n    warning: " + w
	}
	if expectFinding != "" {
		found := !r.Allowed && strings.Contains(message, expectFinding+":")
		for _, w := range r.Warnings {
			found = found || strings.Contains(w, expectFinding+":")
		}
		if !found {
			return "", fmt.Errorf("no finding of %s in the answer: %s", expectFinding, verdict)
		}
	}
	return verdict, nil
}
