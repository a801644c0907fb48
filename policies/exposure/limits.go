package exposure

import "fmt"

// Limits bound what one object may hold; zero means no bound. They are far
// above any real workload: an object beyond one was made to stall the review.
type Limits struct {
	// Containers bounds the containers of a pod spec (init, regular, ephemeral).
	Containers int
	// Ports bounds the ports of a pod spec (all containers) or of a Service.
	Ports int
	// IngressRules bounds an Ingress's rules and TLS hosts together, and a
	// Gateway's (or ListenerSet's) listeners.
	IngressRules int
	// IngressPaths bounds an Ingress's paths (all rules), and a Gateway API
	// route's hostnames times the paths its rules match.
	IngressPaths int
}

// DefaultLimits are the limits of serve's flags.
var DefaultLimits = Limits{Containers: 256, Ports: 1024, IngressRules: 1024, IngressPaths: 4096}

// LimitError is an object beyond a limit: refused, saying which.
type LimitError struct {
	What       string // "ports", "containers", ...
	Count, Max int
	Flag       string // the serve flag that sets the limit
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("the object has %d %s, more than the %d Portreeve reviews in one object (serve %s)", e.Count, e.What, e.Max, e.Flag)
}

func (Limits) over(what string, n, max int, flag string) error {
	if max > 0 && n > max {
		return &LimitError{What: what, Count: n, Max: max, Flag: flag}
	}
	return nil
}
