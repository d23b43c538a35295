package oidc

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/handoffd/handoff/providers/sdk"
)

// wantIssuer is the issuer the discovery document must name: the
// configured one, or Entra ID's template.
func (c Config) wantIssuer() string {
	return cmp.Or(c.tenant.template, c.Issuer)
}

// callbackIssuer reports whether iss, the callback's RFC 9207 parameter,
// names this provider's issuer.
func (c Config) callbackIssuer(iss string) bool {
	if !c.tenant.templated() {
		return iss == c.wantIssuer()
	}
	_, ok := c.tenant.tenantOf(iss)
	return ok
}

// templated reports whether the issuer is a template with {tenantid}.
func (r tenantRule) templated() bool {
	return strings.Contains(r.template, msTenantTemplate)
}

// tenantOf returns the tenant id iss holds in the template's place, and
// whether iss has the template's shape with a GUID there.
func (r tenantRule) tenantOf(iss string) (string, bool) {
	prefix, suffix, _ := strings.Cut(r.template, msTenantTemplate)
	if !strings.HasPrefix(iss, prefix) || !strings.HasSuffix(iss, suffix) || len(iss) < len(prefix)+len(suffix) {
		return "", false
	}
	tid := iss[len(prefix) : len(iss)-len(suffix)]
	return tid, isGUID(tid)
}

// check validates a token's issuer against the template with the token's
// own tid claim (Microsoft's rule for multi-tenant apps): a token whose
// iss names another tenant than its tid, or with no tid, is refused, as
// are tokens of the excluded tenant.
func (r tenantRule) check(iss string, claims map[string]any) error {
	tid, _ := claims["tid"].(string)
	switch {
	case tid == "" || !isGUID(tid):
		return fmt.Errorf("the ID token has no tenant id (tid) claim: %w", sdk.ErrInvalidCredentials)
	case iss != strings.Replace(r.template, msTenantTemplate, tid, 1):
		return fmt.Errorf("the ID token's issuer %q is not its tenant's (tid %s): %w", sdk.Truncate(iss, 100), tid, sdk.ErrInvalidCredentials)
	case r.exclude != "" && strings.EqualFold(tid, r.exclude):
		return fmt.Errorf("the ID token is from a personal Microsoft account; tenant organizations takes work and school accounts only: %w", sdk.ErrInvalidCredentials)
	}
	return nil
}

// checkRequire applies the claim policy (require) to a sign-in's claims.
// The error names the claim, never its value nor the accepted ones: a
// refused person learns which rule failed, not what would pass it.
func (c Config) checkRequire(claims map[string]any) error {
	for _, k := range slices.Sorted(maps.Keys(c.Require)) {
		if k == "email_verified" {
			if sdk.ClaimString(claims[c.Claims.Email]) == "" || !sdk.ClaimBool(claims[c.Claims.EmailVerified]) {
				return fmt.Errorf("the provider requires a verified email, and the identity provider does not vouch for one (require.email_verified): %w", sdk.ErrInvalidCredentials)
			}
			continue
		}
		got, ok := claims[k]
		if !ok || got == nil {
			return fmt.Errorf("the provider requires the claim %q, which the sign-in lacks (require.%s): %w", k, k, sdk.ErrInvalidCredentials)
		}
		if !policyMatch(c.Require[k], got) {
			return fmt.Errorf("the claim %q does not have a value the provider accepts (require.%s): %w", k, k, sdk.ErrInvalidCredentials)
		}
	}
	return nil
}

// policyMatch reports whether the claim value got meets want: equal to
// want, or to one of want's values when it is a list; a claim that is a
// list meets it when one of its elements does.
func policyMatch(want, got any) bool {
	accepted := []string{scalar(want)}
	if list, ok := want.([]any); ok {
		accepted = accepted[:0]
		for _, w := range list {
			accepted = append(accepted, scalar(w))
		}
	}
	values := []any{got}
	if list, ok := got.([]any); ok {
		values = list
	}
	for _, v := range values {
		if s := scalar(v); s != "" && slices.Contains(accepted, s) {
			return true
		}
	}
	return false
}

// scalar spells a JSON scalar as text, so a claim and a config value of
// the same number or boolean compare equal; other values are "".
func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case interface{ String() string }: // json.Number
		return x.String()
	}
	return ""
}
