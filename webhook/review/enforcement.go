package review

import "fmt"

// Enforcement says what a serving installation does with the rules' findings.
type Enforcement string

const (
	// Enforce acts on every finding by its rule's mode: deny, rewrite, warn, dryrun.
	Enforce Enforcement = "enforce"
	// Observe evaluates and records every rule but acts on none: nothing is
	// denied and nothing is rewritten; what would be is returned as warnings.
	// It is how Portreeve is adopted on a cluster that already runs exposed
	// workloads.
	Observe Enforcement = "observe"
)

// ParseEnforcement reads "enforce" or "observe".
func ParseEnforcement(s string) (Enforcement, error) {
	switch e := Enforcement(s); e {
	case Enforce, Observe:
		return e, nil
	}
	return "", fmt.Errorf("must be enforce or observe, got %q", s)
}

// SetEnforcement sets what the reviewer does with findings (Enforce when
// never called). Call it before serving.
func (r *Reviewer) SetEnforcement(e Enforcement) { r.observe = e == Observe }

// Enforcement returns what the reviewer does with findings.
func (r *Reviewer) Enforcement() Enforcement {
	if r.observe {
		return Observe
	}
	return Enforce
}
