package webhook

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func TestLogConstructorKeepsTheRequestFields(t *testing.T) {
	var lines []string
	base := funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{})
	req := &admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-1", Namespace: "team-a", Name: "web", UserInfo: authenticationv1.UserInfo{Username: "alice"},
	}}
	log := LogConstructor(base.WithName("admission"), req).WithName("portreeve").WithValues("mode", "validate")
	if len(lines) != 0 {
		t.Fatalf("logged before any line was written: %v", lines)
	}
	log.Info("denied", "rules", []string{"host-ports"})
	log.Error(errors.New("boom"), "review failed")
	if len(lines) != 2 {
		t.Fatalf("lines = %v", lines)
	}
	for _, want := range []string{`admission/portreeve`, `"msg"="denied"`, `"requestID"="uid-1"`, `"namespace"="team-a"`, `"user"="alice"`, `"mode"="validate"`, `"rules"=["host-ports"]`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("info line %q lacks %s", lines[0], want)
		}
	}
	if !strings.Contains(lines[1], `"error"="boom"`) || !strings.Contains(lines[1], `"requestID"="uid-1"`) {
		t.Errorf("error line %q", lines[1])
	}
}
