package main

import (
	"slices"

	"github.com/spf13/pflag"

	"github.com/portreeve/portreeve/policies"
)

// requestFlags shape the request of an offline review (eval, explain): who
// makes it, and the namespace and namespace labels of the object.
type requestFlags struct {
	namespace string
	user      string
	groups    []string
	nsLabels  map[string]string
}

func (f *requestFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&f.namespace, "namespace", "n", "", "namespace of objects that name none (default \"default\")")
	fs.StringVar(&f.user, "as", "", "user making the request (default "+evalUser.Username+", who has no grants of its own)")
	fs.StringArrayVar(&f.groups, "as-group", nil, "group of the user (repeatable; system:authenticated is always added)")
	fs.StringToStringVar(&f.nsLabels, "namespace-labels", nil, "labels of the object's namespace, e.g. team=a,env=prod")
}

// requester is the user the flags name (evalUser when they name none).
func (f *requestFlags) requester() policies.User {
	if f.user == "" && len(f.groups) == 0 {
		return evalUser
	}
	u := policies.User{Username: f.user, Groups: append(slices.Clone(f.groups), "system:authenticated")}
	if u.Username == "" {
		u.Username = evalUser.Username
	}
	return u
}
