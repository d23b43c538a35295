package config

import (
	"bytes"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Redacted is what Config.Redacted puts in place of a secret.
const Redacted = "REDACTED"

// Redacted returns a copy of c with every secret replaced by "REDACTED":
// tokens.pepper, the password in store.dsn, audit.webhook.secret, each provider's
// deliver.webhook.secret and deliver.email.password, and inside
// providers[].config and plugin.env every value whose key names a secret
// (client_secret, api_key, password, access_token, ...). Unset secrets
// stay empty, and *_file paths are kept: a path is not the secret, and
// the operator needs to see which file is read. c itself is not changed.
func (c Config) Redacted() Config {
	c.Tokens.Pepper = redact(c.Tokens.Pepper)
	c.Store.DSN = redactDSN(c.Store.DSN)
	c.Audit.Webhook.Secret = redact(c.Audit.Webhook.Secret)
	c.CORS.Origins = slices.Clone(c.CORS.Origins)
	c.HTTP.TrustedProxies = slices.Clone(c.HTTP.TrustedProxies)
	c.Redirect.Allow = slices.Clone(c.Redirect.Allow)
	if c.Providers != nil {
		ps := make([]Provider, len(c.Providers))
		for i, p := range c.Providers {
			p.Guards = slices.Clone(p.Guards)
			if p.Plugin != nil {
				pl := *p.Plugin
				pl.Args = slices.Clone(pl.Args)
				if pl.Env != nil {
					env := make(map[string]string, len(pl.Env))
					for k, v := range pl.Env {
						if secretName(k) {
							v = redact(v)
						}
						env[k] = v
					}
					pl.Env = env
				}
				p.Plugin = &pl
			}
			if p.Config != nil {
				p.Config = redactRaw(p.Config).(map[string]any)
			}
			p.Deliver.Webhook.Secret = redact(p.Deliver.Webhook.Secret)
			p.Deliver.Email.Password = redact(p.Deliver.Email.Password)
			p.Deliver.SMS.AuthToken = redact(p.Deliver.SMS.AuthToken)
			p.Deliver.SMS.Secret = redact(p.Deliver.SMS.Secret)
			ps[i] = p
		}
		c.Providers = ps
	}
	return c
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return Redacted
}

// redactRaw copies a raw value, redacting the values of secret keys.
func redactRaw(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			switch {
			case !secretName(k):
				m[k] = redactRaw(x)
			case x == nil || x == "":
				m[k] = x
			default:
				m[k] = Redacted
			}
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, x := range v {
			l[i] = redactRaw(x)
		}
		return l
	}
	return v
}

// redactDSN replaces the password of a PostgreSQL connection string, in
// either form (postgres://user:password@host/db?password=... or
// key=value pairs), and keeps the rest, so the operator still sees which
// server and database the daemon uses. A string it cannot parse is
// redacted whole.
func redactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return Redacted
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		}
		q := u.Query()
		for k := range q {
			if secretName(k) {
				q.Set(k, Redacted)
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	fields := strings.Fields(dsn)
	for i, f := range fields {
		k, _, ok := strings.Cut(f, "=")
		switch {
		case !ok || strings.ContainsAny(f, `'\`): // quoted values: too easy to get wrong
			return Redacted
		case secretName(k):
			fields[i] = k + "=" + Redacted
		}
	}
	return strings.Join(fields, " ")
}

// secretName guesses from a key whether its value is a secret. A key that
// ends in _file (or -file) names a path to a secret, which is not one.
func secretName(key string) bool {
	k := strings.ToLower(key)
	if strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "-file") {
		return false
	}
	for _, s := range []string{"secret", "password", "passwd", "pepper", "private", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	parts := strings.FieldsFunc(k, func(r rune) bool { return r == '_' || r == '-' || r == '.' })
	if len(parts) == 0 {
		return false
	}
	switch parts[len(parts)-1] {
	case "key", "apikey", "token", "dsn", "pass", "pwd", "auth":
		return true
	}
	return false
}

// Effective renders c as YAML, with its secrets redacted (Config.Redacted),
// keys in the order of the Config struct and durations as Go duration
// strings. It backs "handoff config check --print".
func Effective(c Config) ([]byte, error) {
	root, err := yamlNode(reflect.ValueOf(c.Redacted()))
	if err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	doc := &yaml.Node{
		Kind:        yaml.DocumentNode,
		HeadComment: "handoff effective configuration (secrets redacted)",
		Content:     []*yaml.Node{root},
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	return buf.Bytes(), nil
}

// yamlNode builds the YAML of a Config value, walking structs by their
// koanf tags so that the output uses the same keys as the input.
func yamlNode(v reflect.Value) (*yaml.Node, error) {
	if v.Type() == durationType {
		return scalar(formatDuration(time.Duration(v.Int())))
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
		}
		return yamlNode(v.Elem())
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for i := range v.NumField() {
			name := tagName(v.Type().Field(i))
			f := v.Field(i)
			if name == "" || (f.Kind() == reflect.Pointer && f.IsNil()) {
				continue
			}
			val, err := yamlNode(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, val)
		}
		return n, nil
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		if v.Len() == 0 {
			n.Style = yaml.FlowStyle
		}
		for i := range v.Len() {
			val, err := yamlNode(v.Index(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, val)
		}
		return n, nil
	}
	return scalar(v.Interface())
}

// scalar lets the YAML encoder pick the tag and quoting of a plain value
// (or of a raw map, which it sorts by key).
func scalar(v any) (*yaml.Node, error) {
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return n, nil
}

// formatDuration drops the zero tails of time.Duration.String: 15m, not
// 15m0s; 8760h, not 8760h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
