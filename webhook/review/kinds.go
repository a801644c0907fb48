// Package review is the admission logic shared by the webhooks and the offline
// commands: it turns a request into the rules' input, skips what cannot matter,
// applies and checks rewrites. It does no I/O.
package review

import (
	"errors"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
)

// ErrUnsupportedKind is returned for kinds Portreeve does not review.
var ErrUnsupportedKind = errors.New("unsupported kind")

// Supported reports whether Portreeve reviews this kind (the table in
// policies/exposure).
func Supported(gvk policies.GroupVersionKind) bool { return exposure.Lookup(gvk) != nil }

// SupportedKinds lists the reviewed kinds as group/version/Kind strings.
func SupportedKinds() []string { return exposure.Names() }
