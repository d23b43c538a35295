package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/maps"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// EnvPrefix starts the name of every environment variable Load reads.
const EnvPrefix = "HANDOFF_"

// envTestPrefix starts variables that belong to test harnesses, such as
// HANDOFF_TEST_POSTGRES_DSN; Load ignores them instead of reporting them
// as unknown keys, so a daemon started by a test still loads.
const envTestPrefix = EnvPrefix + "TEST_"

// flagKeys maps the command-line flags Load honours to the keys they set.
var flagKeys = map[string]string{
	"listen":       "listen",
	"data":         "data",
	"project":      "project",
	"store-path":   "store.path",
	"store-driver": "store.driver",
	"store-dsn":    "store.dsn",

	"bootstrap-key-file": "secrets.bootstrap_key_file",
}

// LoadOptions says where Load finds the configuration.
type LoadOptions struct {
	// Path is a config file named explicitly (--config). It must exist.
	Path string
	// DefaultPath is read when Path is empty, and only if the file exists
	// (main passes "handoff.yaml").
	DefaultPath string
	// Env is the environment as os.Environ returns it ("KEY=value").
	// Nil means os.Environ(); tests pass their own, or an empty slice.
	Env []string
	// Flags are the parsed command-line flags. Only flags that were set
	// (Changed) override, and only these: listen, data, project,
	// store-path, store-driver, store-dsn (store.path and so on) and
	// bootstrap-key-file (secrets.bootstrap_key_file).
	// Other flags in the set are ignored. Nil means no flags.
	Flags *pflag.FlagSet
}

// Load builds the configuration from Default, then the config file (YAML
// for .yaml and .yml, TOML for .toml), then HANDOFF_* environment
// variables, then flags; each layer overrides the one before. It decodes
// strictly: an unknown key, in the file or the environment, is an error
// naming its full path, except inside providers[].config. Provider entries
// get Provider.WithDefaults, and *_file secrets are read into their
// sibling keys.
//
// A file that cannot be read or parsed is reported as a plain error; bad
// keys and values as Problems, one per key. Load does not call Validate.
func Load(opts LoadOptions) (Config, error) {
	k := koanf.New(".")

	path, err := configPath(opts)
	if err != nil {
		return Config{}, err
	}
	if path != "" {
		parser, err := parserFor(path)
		if err != nil {
			return Config{}, err
		}
		if err := k.Load(file.Provider(path), parser); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", path, err)
		}
	}

	l := &loader{sources: map[string]string{}}

	environ := opts.Env
	if environ == nil {
		environ = os.Environ()
	}
	envNames := map[string]string{}
	envp := env.Provider("", env.Opt{
		Prefix: EnvPrefix,
		TransformFunc: func(name, value string) (string, any) {
			key := envKey(name)
			if key == "" || strings.HasPrefix(name, envTestPrefix) {
				return "", nil
			}
			envNames[key] = name
			return key, value
		},
		EnvironFunc: func() []string { return environ },
	})
	if err := k.Load(envp, nil, koanf.WithMergeFunc(l.merge(envNames))); err != nil {
		return Config{}, fmt.Errorf("config: environment: %w", err)
	}

	if opts.Flags != nil {
		flagNames := map[string]string{}
		flagp := posflag.ProviderWithFlag(opts.Flags, ".", nil, func(f *pflag.Flag) (string, any) {
			key, ok := flagKeys[f.Name]
			if !ok || !f.Changed {
				return "", nil
			}
			flagNames[key] = "--" + f.Name
			return key, posflag.FlagVal(opts.Flags, f)
		})
		if err := k.Load(flagp, nil, koanf.WithMergeFunc(l.merge(flagNames))); err != nil {
			return Config{}, fmt.Errorf("config: flags: %w", err)
		}
	}

	cfg := Default()
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: decoderConfig()}); err != nil {
		l.decodeError(err)
	}
	for i := range cfg.Providers {
		p := cfg.Providers[i].WithDefaults()
		for key, v := range p.Config {
			p.Config[key] = normalize(v)
		}
		cfg.Providers[i] = p
	}

	l.readSecret("tokens.pepper_file", cfg.Tokens.PepperFile, &cfg.Tokens.Pepper, &cfg.Tokens.pepperFromFile)
	l.readSecret("store.dsn_file", cfg.Store.DSNFile, &cfg.Store.DSN, &cfg.Store.dsnFromFile)
	l.readSecret("audit.webhook.secret_file", cfg.Audit.Webhook.SecretFile, &cfg.Audit.Webhook.Secret, &cfg.Audit.Webhook.secretFromFile)
	for i := range cfg.Providers {
		d := &cfg.Providers[i].Deliver
		key := fmt.Sprintf("providers[%d].deliver.", i)
		l.readSecret(key+"webhook.secret_file", d.Webhook.SecretFile, &d.Webhook.Secret, &d.Webhook.secretFromFile)
		l.readSecret(key+"email.password_file", d.Email.PasswordFile, &d.Email.Password, &d.Email.passwordFromFile)
		l.readSecret(key+"sms.auth_token_file", d.SMS.AuthTokenFile, &d.SMS.AuthToken, &d.SMS.authTokenFromFile)
		l.readSecret(key+"sms.secret_file", d.SMS.SecretFile, &d.SMS.Secret, &d.SMS.secretFromFile)
	}

	if len(l.problems) > 0 {
		return Config{}, l.problems
	}
	return cfg, nil
}

// configPath picks the file to read: the explicit one, else the default
// one if it exists, else none.
func configPath(opts LoadOptions) (string, error) {
	if opts.Path != "" {
		return opts.Path, nil
	}
	if opts.DefaultPath == "" {
		return "", nil
	}
	_, err := os.Stat(opts.DefaultPath)
	switch {
	case err == nil:
		return opts.DefaultPath, nil
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	default:
		return "", fmt.Errorf("config: %w", err)
	}
}

// parserFor picks the parser by file extension.
func parserFor(path string) (koanf.Parser, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return yaml.Parser(), nil
	case ".toml":
		return toml.Parser(), nil
	}
	return nil, fmt.Errorf("config: %s: unknown file type (want .yaml, .yml or .toml)", path)
}

// envKey turns HANDOFF_TOKENS__MAX_ATTEMPTS into tokens.max_attempts.
func envKey(name string) string {
	key := strings.TrimPrefix(name, EnvPrefix)
	return strings.ToLower(strings.ReplaceAll(key, "__", "."))
}

// loader collects the problems of one Load and remembers which keys the
// environment and the flags set, to say so in messages.
type loader struct {
	problems Problems
	sources  map[string]string // key path → HANDOFF_... or --flag
}

func (l *loader) add(key, msg string) {
	if src := l.source(key); src != "" {
		msg += " (from " + src + ")"
	}
	l.problems = append(l.problems, Problem{Key: key, Message: msg})
}

// source returns the variable or flag that set key, one of its parents
// or, for an unknown section such as "nope" from HANDOFF_NOPE__X, one of
// its children.
func (l *loader) source(key string) string {
	for k := key; k != ""; k = parentKey(k) {
		if s, ok := l.sources[k]; ok {
			return s
		}
	}
	var children []string
	for k := range l.sources {
		if key != "" && (strings.HasPrefix(k, key+".") || strings.HasPrefix(k, key+"[")) {
			children = append(children, k)
		}
	}
	if len(children) == 0 {
		return ""
	}
	return l.sources[slices.Min(children)]
}

// merge returns a koanf merge function that sets each flattened key of
// src in dest. Unlike koanf's own merge it steps into lists, so that
// providers.0.name sets the name of the first provider entry.
func (l *loader) merge(names map[string]string) func(src, dest map[string]any) error {
	return func(src, dest map[string]any) error {
		flat, _ := maps.Flatten(src, nil, ".")
		keys := make([]string, 0, len(flat))
		for key := range flat {
			keys = append(keys, key)
		}
		slices.SortFunc(keys, compareKeys)
		for _, key := range keys {
			segs := strings.Split(key, ".")
			if slices.Contains(segs, "") {
				l.problems = append(l.problems, Problem{Key: names[key], Message: "not a config key: empty level in the name"})
				continue
			}
			display := displayKey(segs)
			l.sources[display] = names[key]
			if _, err := setPath(dest, configType, segs, flat[key]); err != nil {
				l.add(display, err.Error())
			}
		}
		return nil
	}
}

// compareKeys orders dotted keys level by level, numbers by value, so that
// list index 2 is set before index 10.
func compareKeys(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, errx := strconv.Atoi(as[i])
		y, erry := strconv.Atoi(bs[i])
		if errx == nil && erry == nil {
			if x != y {
				return x - y
			}
			continue
		}
		if c := strings.Compare(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return len(as) - len(bs)
}

var (
	configType   = reflect.TypeFor[Config]()
	durationType = reflect.TypeFor[time.Duration]()
	stringsType  = reflect.TypeFor[[]string]()
)

// setPath sets segs in node to val and returns the new node. t is the Go
// type node decodes into, or nil where that is not known: inside a raw map,
// or under an unknown key (which decoding reports).
func setPath(node any, t reflect.Type, segs []string, val any) (any, error) {
	if len(segs) == 0 {
		return val, nil
	}
	t = deref(t)
	seg, rest := segs[0], segs[1:]
	list, isList := node.([]any)
	if (t != nil && t.Kind() == reflect.Slice) || (t == nil && isList) {
		i, err := strconv.Atoi(seg)
		if err != nil || i < 0 {
			return nil, fmt.Errorf("%q is not a list index", seg)
		}
		if !isList {
			list = nil
		}
		if i > len(list) {
			return nil, fmt.Errorf("index %d is past the end of the list (%d entries)", i, len(list))
		}
		if i == len(list) {
			list = append(list, nil)
		}
		var elem reflect.Type
		if t != nil {
			elem = t.Elem()
		}
		v, err := setPath(list[i], elem, rest, val)
		if err != nil {
			return nil, err
		}
		list[i] = v
		return list, nil
	}
	m, ok := node.(map[string]any)
	if !ok {
		m = map[string]any{}
	}
	v, err := setPath(m[seg], childType(t, seg), rest, val)
	if err != nil {
		return nil, err
	}
	m[seg] = v
	return m, nil
}

// displayKey writes segs as a key path the way errors name it:
// providers.0.name becomes providers[0].name.
func displayKey(segs []string) string {
	var b strings.Builder
	t := configType
	for i, seg := range segs {
		t = deref(t)
		if t != nil && t.Kind() == reflect.Slice {
			b.WriteString("[" + seg + "]")
			t = t.Elem()
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
		t = childType(t, seg)
	}
	return b.String()
}

// parentKey strips the last level off a key path: a.b[1] → a.b → a → "".
func parentKey(key string) string {
	if strings.HasSuffix(key, "]") {
		if i := strings.LastIndexByte(key, '['); i >= 0 {
			return key[:i]
		}
	}
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i]
	}
	return ""
}

// typeAt returns the Go type a key path such as providers[0].deliver
// decodes into, or nil.
func typeAt(key string) reflect.Type {
	t := configType
	if key == "" {
		return t
	}
	for _, part := range strings.Split(key, ".") {
		name, idx, _ := strings.Cut(part, "[")
		t = childType(t, name)
		for ; idx != ""; _, idx, _ = strings.Cut(idx, "[") {
			if t = deref(t); t == nil || (t.Kind() != reflect.Slice && t.Kind() != reflect.Map) {
				return nil
			}
			t = t.Elem()
		}
	}
	return deref(t)
}

// childType returns the type of key seg inside t.
func childType(t reflect.Type, seg string) reflect.Type {
	t = deref(t)
	if t == nil {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		for f := range t.Fields() {
			if tagName(f) == seg {
				return f.Type
			}
		}
	case reflect.Map:
		if t.Elem().Kind() != reflect.Interface {
			return t.Elem()
		}
	}
	return nil
}

// tagName is the key of a struct field, or "" if it has none.
func tagName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
	return name
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// decoderConfig is the strict mapstructure setup: unknown keys are errors,
// key names match exactly, strings from the environment convert to numbers
// and booleans, durations take seconds, lists take comma-separated strings.
func decoderConfig() *mapstructure.DecoderConfig {
	return &mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.ComposeDecodeHookFunc(durationHook, intHook, listHook),
		ErrorUnused:      true,
		WeaklyTypedInput: true,
		MatchName:        func(a, b string) bool { return a == b },
		TagName:          "koanf",
	}
}

// maxSeconds is the largest whole number of seconds a time.Duration holds.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// durationHook decodes time.Duration fields from Go duration strings or
// from numbers, which count seconds.
func durationHook(_, to reflect.Type, data any) (any, error) {
	if to != durationType || data == nil {
		return data, nil
	}
	if d, ok := data.(time.Duration); ok {
		return d, nil
	}
	v := reflect.ValueOf(data)
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return seconds(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if v.Uint() > uint64(maxSeconds) {
			return nil, errors.New("duration is too long")
		}
		return seconds(int64(v.Uint()))
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.Abs(f) > float64(maxSeconds) {
			return nil, fmt.Errorf("invalid duration %v", f)
		}
		return time.Duration(f * float64(time.Second)), nil
	case reflect.String:
		s := strings.TrimSpace(v.String())
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return seconds(n)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q: want a Go duration such as \"15m\" or \"1h30m\", or whole seconds", v.String())
		}
		return d, nil
	}
	return nil, fmt.Errorf("want a duration such as \"15m\" or whole seconds, got %s", describeValue(data))
}

func seconds(n int64) (time.Duration, error) {
	if n > maxSeconds || n < -maxSeconds {
		return 0, errors.New("duration is too long")
	}
	return time.Duration(n) * time.Second, nil
}

// intHook refuses to truncate fractions or wrap large numbers into int
// fields, which mapstructure would do silently.
func intHook(_, to reflect.Type, data any) (any, error) {
	switch to.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
	default:
		return data, nil
	}
	if to == durationType {
		return data, nil
	}
	switch n := data.(type) {
	case float64:
		if n != math.Trunc(n) || math.Abs(n) >= math.MaxInt64 {
			return nil, fmt.Errorf("want a whole number, got %v", n)
		}
		return int64(n), nil
	case float32:
		return intHook(nil, to, float64(n))
	case uint64:
		if n > math.MaxInt64 {
			return nil, fmt.Errorf("number %d is too large", n)
		}
	case uint:
		if uint64(n) > math.MaxInt64 {
			return nil, fmt.Errorf("number %d is too large", n)
		}
	}
	return data, nil
}

// listHook splits a string on commas where a list of strings is wanted, so
// HANDOFF_CORS__ORIGINS=https://a.example,https://b.example works.
func listHook(_, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if !ok || to != stringsType {
		return data, nil
	}
	list := []string{}
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			list = append(list, part)
		}
	}
	return list, nil
}

// decodeError turns mapstructure's error tree into one problem per key,
// sorted by key (mapstructure walks maps in random order).
func (l *loader) decodeError(err error) {
	n := len(l.problems)
	l.walk(err, "")
	slices.SortStableFunc(l.problems[n:], func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
}

func (l *loader) walk(err error, name string) {
	if err == nil {
		return
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			l.walk(e, name)
		}
		return
	}
	if de, ok := err.(*mapstructure.DecodeError); ok {
		n := de.Name()
		if n == configType.String() {
			n = "" // mapstructure names the root by its type
		}
		if de.Unwrap() != nil {
			l.walk(de.Unwrap(), n)
			return
		}
		l.add(n, de.Error())
		return
	}
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		// A wrapper, such as mapstructure's "decoding failed" around
		// the joined errors: the keys are inside.
		l.walk(errors.Unwrap(err), name)
		return
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
		for _, key := range strings.Split(rest, ", ") {
			l.add(joinKey(name, key), "unknown key"+suggest(name, key))
		}
		return
	}
	l.add(name, describeError(err))
}

func joinKey(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// suggest proposes the known key nearest to an unknown one.
func suggest(parent, key string) string {
	t := typeAt(parent)
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	best, bestDist := "", 3
	for f := range t.Fields() {
		name := tagName(f)
		if name == "" {
			continue
		}
		if d := editDistance(strings.ToLower(key), name); d < bestDist && d < len(name) {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", joinKey(parent, best))
}

// editDistance is the optimal string alignment distance of a and b:
// insertions, deletions, substitutions and swaps of neighbours cost 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// describeError rewords mapstructure's type errors for people.
func describeError(err error) string {
	var ute *mapstructure.UnconvertibleTypeError
	if errors.As(err, &ute) && ute.Expected.IsValid() {
		return fmt.Sprintf("want %s, got %s", describeType(ute.Expected.Type()), describeValue(ute.Value))
	}
	var pe *mapstructure.ParseError
	if errors.As(err, &pe) && pe.Expected.IsValid() {
		return fmt.Sprintf("want %s, got %s", describeType(pe.Expected.Type()), describeValue(pe.Value))
	}
	return err.Error()
}

func describeType(t reflect.Type) string {
	t = deref(t)
	if t == durationType {
		return "a duration"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	s := fmt.Sprint(v)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// normalize gives every map in a raw value string keys, so a provider's
// config encodes to JSON.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normalize(x)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[fmt.Sprint(k)] = normalize(x)
		}
		return m
	case []any:
		for i, x := range v {
			v[i] = normalize(x)
		}
		return v
	}
	return v
}

// readSecret reads a *_file secret into its sibling key, unless the
// sibling is set too (Validate reports that).
func (l *loader) readSecret(key, path string, dst *string, fromFile *bool) {
	if path == "" || *dst != "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		l.add(key, fmt.Sprintf("cannot read the secret: %v", err))
		return
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		l.add(key, fmt.Sprintf("%s is empty", path))
		return
	}
	*dst, *fromFile = s, true
}
