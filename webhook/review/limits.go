package review

import (
	"errors"

	"github.com/portreeve/portreeve/policies/exposure"
)

// Limits bound what one review may hold, far above any real workload: an
// object beyond them costs time and memory out of proportion (a Pod with
// 65,000 hostPorts took 1.6 s and 225 MB to judge) and is refused while its
// exposure is read, before the rules see it. Zero means no limit.
type Limits = exposure.Limits

// DefaultLimits are the limits of serve's flags.
var DefaultLimits = exposure.DefaultLimits

// LimitError is an object beyond a limit: refused, saying which.
type LimitError = exposure.LimitError

// IsLimit reports whether err is an object beyond a limit.
func IsLimit(err error) bool {
	var le *LimitError
	return errors.As(err, &le)
}

// SetLimits sets the limits of the reviews (none when never called). Call it
// before serving.
func (r *Reviewer) SetLimits(l Limits) { r.limits = l }
