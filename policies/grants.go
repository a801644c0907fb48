package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Subjects names who a grant or an exemption applies to. Within a list any
// entry matches; across the lists that are set, all must match.
type Subjects struct {
	Namespaces      []string `json:"namespaces,omitempty"`
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	Users           []string `json:"users,omitempty"`
	Groups          []string `json:"groups,omitempty"`
}

// Grant allows some kinds of exposure to some subjects.
type Grant struct {
	Name string `json:"name"`
	Subjects
	HostNetwork    bool          `json:"hostNetwork,omitempty"`
	HostPorts      []string      `json:"hostPorts,omitempty"`
	NodePorts      []string      `json:"nodePorts,omitempty"`
	LoadBalancer   *LoadBalancer `json:"loadBalancer,omitempty"`
	ExternalIPs    []string      `json:"externalIPs,omitempty"`
	IngressDomains []string      `json:"ingressDomains,omitempty"`
	IngressClasses []string      `json:"ingressClasses,omitempty"`
	Expires        string        `json:"expires,omitempty"`
	Reason         string        `json:"reason,omitempty"`
}

// LoadBalancer is `true`, `false` or an object with conditions.
type LoadBalancer struct {
	Allowed              bool     `json:"-"`
	Classes              []string `json:"classes,omitempty"`
	SourceRangesRequired bool     `json:"sourceRangesRequired,omitempty"`
}

// MarshalJSON writes what UnmarshalJSON reads back as the same value: false,
// true, or the object of conditions (which means allowed).
func (lb LoadBalancer) MarshalJSON() ([]byte, error) {
	switch {
	case !lb.Allowed:
		return []byte("false"), nil
	case len(lb.Classes) == 0 && !lb.SourceRangesRequired:
		return []byte("true"), nil
	}
	type plain LoadBalancer
	return json.Marshal(plain(lb))
}

// UnmarshalJSON accepts a boolean or an object.
func (lb *LoadBalancer) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch string(b) {
	case "true":
		*lb = LoadBalancer{Allowed: true}
		return nil
	case "false", "null":
		*lb = LoadBalancer{}
		return nil
	}
	type plain LoadBalancer
	var p plain
	if err := strictUnmarshal(b, &p); err != nil {
		return err
	}
	*lb = LoadBalancer(p)
	lb.Allowed = true
	return nil
}

// Exemption lifts some or all rules for some subjects, for a while and a reason.
type Exemption struct {
	Name string `json:"name"`
	Subjects
	Rules   []string `json:"rules,omitempty"`
	Expires string   `json:"expires,omitempty"`
	Reason  string   `json:"reason,omitempty"`
}

// PortRange is an inclusive range of ports, for one protocol or all ("").
type PortRange struct {
	From     int    `json:"from"`
	To       int    `json:"to"`
	Protocol string `json:"protocol,omitempty"`
}

// ParsePortRange reads "80", "8000-8100" or, when withProtocol, "53/UDP".
func ParsePortRange(s string, withProtocol bool) (PortRange, error) {
	var r PortRange
	spec := s
	if p, proto, ok := strings.Cut(s, "/"); ok {
		if !withProtocol {
			return r, fmt.Errorf("%q: a protocol is not allowed here", s)
		}
		switch proto {
		case "TCP", "UDP", "SCTP":
		default:
			return r, fmt.Errorf("%q: protocol must be TCP, UDP or SCTP", s)
		}
		spec, r.Protocol = p, proto
	}
	from, to, isRange := strings.Cut(spec, "-")
	var err error
	if r.From, err = strconv.Atoi(from); err != nil {
		return r, fmt.Errorf("%q: not a port or port range such as 80 or 8000-8100", s)
	}
	r.To = r.From
	if isRange {
		if r.To, err = strconv.Atoi(to); err != nil {
			return r, fmt.Errorf("%q: not a port or port range such as 80 or 8000-8100", s)
		}
	}
	if r.From < 1 || r.To > 65535 || r.From > r.To {
		return r, fmt.Errorf("%q: ports must lie in 1-65535 with the lower bound first", s)
	}
	return r, nil
}
