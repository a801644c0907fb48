package policies

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/types"
)

const rulesPackagePrefix = "data.portreeve.rules."

// blockedBuiltins can reach the network or the host; no rule may call them.
var blockedBuiltins = []string{
	"http.send", "net.lookup_ip_addr", "opa.runtime", "providers.aws.sign_req",
	"rego.parse_module", "trace",
}

// Capabilities are the OPA capabilities rules are compiled with: this version's
// builtins minus the blocked ones, and no network access for schemas.
func Capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
		return slices.Contains(blockedBuiltins, b.Name)
	})
	c.AllowNet = []string{}
	return c
}

// Compile parses and compiles the built-in modules plus extra ones with the
// sandboxed capabilities. It returns the ids of the built-in rules too.
func Compile(extra map[string]string) (*ast.Compiler, []string, error) {
	builtinSrc, err := BuiltinModules()
	if err != nil {
		return nil, nil, err
	}
	modules := map[string]*ast.Module{}
	var builtinIDs []string
	parse := func(name, src string) error {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			return err
		}
		modules[name] = m
		return nil
	}
	for _, name := range sortedKeys(builtinSrc) {
		if err := parse(name, builtinSrc[name]); err != nil {
			return nil, nil, fmt.Errorf("built-in module %s: %w", name, err)
		}
		if id, ok := ruleID(modules[name]); ok {
			builtinIDs = append(builtinIDs, id)
		}
	}
	for _, name := range sortedKeys(extra) {
		if _, dup := modules[name]; dup {
			return nil, nil, fmt.Errorf("module %s: name taken by a built-in module", name)
		}
		if err := parse(name, extra[name]); err != nil {
			return nil, nil, err
		}
		if err := checkCustomPackage(name, modules[name], builtinIDs); err != nil {
			return nil, nil, err
		}
	}
	compiler := ast.NewCompiler().
		WithCapabilities(Capabilities()).
		WithEnablePrintStatements(false)
	compiler.Compile(modules)
	if compiler.Failed() {
		return nil, nil, compileError(compiler.Errors)
	}
	return compiler, builtinIDs, nil
}

// rulePackageName is what a custom rule package's last segment must look like.
var rulePackageName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkCustomPackage rejects a custom module whose package shadows a built-in
// rule or takes a name Portreeve reserves: under data.portreeve only
// data.portreeve.rules.<name> (and packages below it) are open to authors.
func checkCustomPackage(file string, m *ast.Module, builtinIDs []string) error {
	path := m.Package.Path.String()
	where := fmt.Sprintf("%s:%d", file, m.Package.Location.Row)
	if path != "data.portreeve" && !strings.HasPrefix(path, "data.portreeve.") {
		return nil
	}
	rest, ok := strings.CutPrefix(path, rulesPackagePrefix)
	if !ok {
		return fmt.Errorf("%s: package %s is reserved for Portreeve (custom rules go in package portreeve.rules.<name>)",
			where, strings.TrimPrefix(path, "data."))
	}
	name, _, _ := strings.Cut(rest, ".")
	if !rulePackageName.MatchString(name) {
		return fmt.Errorf("%s: rule package name %q must be lower case letters, digits and underscores, starting with a letter",
			where, name)
	}
	if id := strings.ReplaceAll(name, "_", "-"); slices.Contains(builtinIDs, id) {
		return fmt.Errorf("%s: package %s shadows the built-in rule %q", where, strings.TrimPrefix(path, "data."), id)
	}
	return nil
}

func compileError(errs ast.Errors) error {
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		out = append(out, e)
	}
	return fmt.Errorf("compile rules: %w", errors.Join(out...))
}

// ruleID returns the rule id of a rule package (portreeve.rules.host_ports -> host-ports).
func ruleID(m *ast.Module) (string, bool) {
	p := m.Package.Path.String()
	if !strings.HasPrefix(p, rulesPackagePrefix) {
		return "", false
	}
	rest := strings.TrimPrefix(p, rulesPackagePrefix)
	if strings.Contains(rest, ".") || strings.HasSuffix(rest, "_test") {
		return "", false
	}
	return strings.ReplaceAll(rest, "_", "-"), true
}

// checkOutputTypes rejects a custom rule whose deny, warn or rewrite is, by
// the type checker's inference, not a set that can hold objects: such
// findings would never reach the engine.
func checkOutputTypes(c *ast.Compiler, rules []RuleInfo) error {
	var errs []error
	for _, r := range rules {
		if r.Builtin {
			continue
		}
		pkg := rulesPackagePrefix + strings.ReplaceAll(r.ID, "-", "_")
		for _, out := range []string{"deny", "warn", "rewrite"} {
			t := c.TypeEnv.GetByRef(ast.MustParseRef(pkg + "." + out))
			if t == nil || types.Nil(t) {
				continue
			}
			if _, isSet := t.(*types.Set); !isSet {
				if _, isAny := t.(types.Any); !isAny {
					errs = append(errs, fmt.Errorf("%s: rule %s: %s must be a set (%s contains {...} if ...), not %s",
						r.File, r.ID, out, out, t))
				}
				continue
			}
			if !mayBeObject(types.Values(t)) {
				errs = append(errs, fmt.Errorf("%s: rule %s: %s must hold objects such as {\"msg\": ...}, not %s",
					r.File, r.ID, out, types.Values(t)))
			}
		}
	}
	return errors.Join(errs...)
}

func mayBeObject(t types.Type) bool {
	switch t := t.(type) {
	case nil, *types.Object:
		return true
	case types.Any:
		if len(t) == 0 {
			return true
		}
		for _, x := range t {
			if mayBeObject(x) {
				return true
			}
		}
	}
	return false
}
