package sdk

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// DecodeConfig decodes a provider's config section into v (a pointer to a
// struct, usually with defaults already set) strictly: every unknown key is
// reported, each as a *ConfigError naming its dotted path, and a value of
// the wrong type is a *ConfigError naming its key. Empty or null config
// leaves v as it is. Field names follow encoding/json (the `json` tag).
//
// Several problems come back joined (errors.Join); each matches
// ErrInvalidRequest.
func DecodeConfig(raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("sdk: DecodeConfig wants a non-nil pointer, got %T", v)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return &ConfigError{Message: "not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	if _, ok := tree.(map[string]any); !ok {
		return &ConfigError{Message: "want an object, got " + jsonKind(tree)}
	}
	var unknown []string
	unknownKeys(rv.Type(), tree, "", &unknown)
	if len(unknown) > 0 {
		errs := make([]error, len(unknown))
		for i, k := range unknown {
			errs[i] = &ConfigError{Key: k, Message: "unknown key"}
		}
		return errors.Join(errs...)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &ConfigError{Key: te.Field, Message: fmt.Sprintf("want %s, got %s", typeName(te.Type), te.Value)}
		}
		return &ConfigError{Message: strings.TrimPrefix(err.Error(), "json: ")}
	}
	return nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// unknownKeys walks a decoded JSON tree against the Go type it will be
// decoded into and collects the paths of keys no field takes.
func unknownKeys(t reflect.Type, tree any, path string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return // the type decodes itself
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := tree.(map[string]any)
		if !ok {
			return // a type error, reported by the decoder
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := lookupField(fields, k)
			if !ok {
				*out = append(*out, join(path, k))
				continue
			}
			unknownKeys(ft, obj[k], join(path, k), out)
		}
	case reflect.Map:
		obj, ok := tree.(map[string]any)
		if !ok {
			return
		}
		for k, v := range obj {
			unknownKeys(t.Elem(), v, join(path, k), out)
		}
	case reflect.Slice, reflect.Array:
		arr, ok := tree.([]any)
		if !ok {
			return
		}
		for i, v := range arr {
			unknownKeys(t.Elem(), v, path+"["+strconv.Itoa(i)+"]", out)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonFields maps the JSON names of t's fields (embedded structs
// flattened, as encoding/json does) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, dup := out[k]; !dup {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// lookupField finds key among fields, exactly first, then without regard
// to case, as encoding/json does.
func lookupField(fields map[string]reflect.Type, key string) (reflect.Type, bool) {
	if t, ok := fields[key]; ok {
		return t, true
	}
	for name, t := range fields {
		if strings.EqualFold(name, key) {
			return t, true
		}
	}
	return nil, false
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// SecretFromFile returns value, or, when path is set, the content of the
// file at path with surrounding space trimmed: how a plugin reads a
// `*_file` config key. A file that cannot be read or is empty is a
// *ConfigError at key.
func SecretFromFile(key, path, value string) (string, error) {
	if path == "" {
		return value, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return "", &ConfigError{Key: key, Message: "cannot read " + path + ": " + msg}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", &ConfigError{Key: key, Message: path + " is empty"}
	}
	return s, nil
}
