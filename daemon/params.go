package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/handoffd/handoff/tokenstore"
)

// params are a request's parameters: the JSON body over the query string,
// as Appwrite's getParam reads them.
type params struct {
	body  map[string]any
	query url.Values
}

// errNotObject answers a body that is not a JSON object.
var errNotObject = &apiError{400, "general_argument_invalid", "The request body must be a JSON object."}

// readParams decodes the request's parameters. A body that is not a JSON
// object is a 400; one over the size limit a 413.
func readParams(r *http.Request) (params, error) {
	p := params{query: r.URL.Query()}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return p, errBodyTooLarge
		}
		return p, errorf(400, "general_argument_invalid", "Could not read the request body.")
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return p, nil
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(raw))
		if err != nil {
			return p, errorf(400, "general_argument_invalid", "The request body is not valid form data.")
		}
		p.body = map[string]any{}
		for k, v := range form {
			p.body[k] = v[len(v)-1]
		}
		return p, nil
	}
	// Decoding into an interface builds the map directly, without the
	// reflection a map[string]any target goes through.
	var body any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		return p, errNotObject
	}
	obj, ok := body.(map[string]any)
	if !ok {
		return p, errNotObject
	}
	p.body = obj
	return p, nil
}

func (p params) lookup(name string) (any, bool) {
	if v, ok := p.body[name]; ok && v != nil {
		return v, true
	}
	if vs, ok := p.query[name]; ok && len(vs) > 0 {
		return vs[len(vs)-1], true
	}
	return nil, false
}

// str returns a string parameter; absent gives "" and false.
func (p params) str(name string) (string, bool, error) {
	v, ok := p.lookup(name)
	if !ok {
		return "", false, nil
	}
	switch v := v.(type) {
	case string:
		return v, true, nil
	case json.Number:
		return v.String(), true, nil
	}
	return "", true, invalidParam(name, "Value must be a valid string")
}

// text returns a required string of 1..max characters.
func (p params) text(name string, max int) (string, error) {
	s, ok, err := p.str(name)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", missingParam(name)
	case s == "" || len(s) > max:
		return "", invalidParam(name, "Value must be a valid string and at least 1 chars and no longer than "+strconv.Itoa(max)+" chars")
	}
	return s, nil
}

// id returns a required custom id parameter.
func (p params) id(name string) (string, error) {
	s, ok, err := p.str(name)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", missingParam(name)
	case s != "unique()" && !tokenstore.ValidID(s):
		return "", invalidParam(name, "Parameter must contain at most 36 chars. Valid chars are a-z, A-Z, 0-9, period, hyphen, and underscore. Can't start with a special char")
	}
	return s, nil
}

// intRange returns an integer parameter in lo..hi, def when absent. Like
// Appwrite's Range validator it takes numeric strings ("12") but not
// fractions ("12.5").
func (p params) intRange(name string, def, lo, hi int) (int, error) {
	v, ok := p.lookup(name)
	if !ok {
		return def, nil
	}
	bad := tokenstore.RangeError(name, lo, hi)
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	default:
		return 0, bad
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != float64(int64(f)) {
			return 0, bad
		}
		n = int64(f)
	}
	if n < int64(lo) || n > int64(hi) {
		return 0, bad
	}
	return int(n), nil
}

// boolean returns a boolean parameter ("true"/"false" in a query string).
func (p params) boolean(name string, def bool) (bool, error) {
	v, ok := p.lookup(name)
	if !ok {
		return def, nil
	}
	switch v := v.(type) {
	case bool:
		return v, nil
	case string:
		if b, err := strconv.ParseBool(v); err == nil {
			return b, nil
		}
	}
	return false, invalidParam(name, "Value must be a valid boolean")
}

// list returns an array parameter: a JSON array in the body, or the
// PHP-style name[0]=..&name[1]=.. (or name[]=..) of a query string.
func (p params) list(name string) ([]string, error) {
	if v, ok := p.body[name]; ok && v != nil {
		arr, ok := v.([]any)
		if !ok {
			return nil, invalidParam(name, "Value must be a valid array")
		}
		out := make([]string, 0, len(arr))
		for _, e := range arr {
			s, ok := e.(string)
			if !ok {
				return nil, invalidParam(name, "Value must be a valid array of strings")
			}
			out = append(out, s)
		}
		return out, nil
	}
	type indexed struct {
		i int
		v []string
	}
	var found []indexed
	for k, vs := range p.query {
		switch {
		case k == name || k == name+"[]":
			found = append(found, indexed{-1, vs})
		case strings.HasPrefix(k, name+"[") && strings.HasSuffix(k, "]"):
			i, err := strconv.Atoi(k[len(name)+1 : len(k)-1])
			if err != nil {
				return nil, invalidParam(name, "Value must be a valid array")
			}
			found = append(found, indexed{i, vs})
		}
	}
	sort.SliceStable(found, func(a, b int) bool { return found[a].i < found[b].i })
	var out []string
	for _, f := range found {
		out = append(out, f.v...)
	}
	return out, nil
}

// query is one of Appwrite's JSON queries.
type query struct {
	Method    string `json:"method"`
	Attribute string `json:"attribute"`
	Values    []any  `json:"values"`
}

// parseUserQueries turns Appwrite queries into a tokenstore.UserQuery.
// Supported: equal, limit, offset, cursorAfter and search.
func parseUserQueries(raw []string, search string) (tokenstore.UserQuery, error) {
	q := tokenstore.UserQuery{Search: search, Limit: 25}
	bad := func(msg string) error { return errorf(400, "general_query_invalid", "Invalid query: %s", msg) }
	if len(raw) > 100 {
		return q, bad("too many queries, at most 100")
	}
	for _, s := range raw {
		var qq query
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&qq); err != nil {
			return q, bad("Invalid query. Syntax error")
		}
		switch qq.Method {
		case "equal":
			if !allowedAttr(qq.Attribute) {
				return q, bad("Attribute not found in schema: " + qq.Attribute)
			}
			if len(qq.Values) == 0 || len(qq.Values) > 100 {
				return q, bad("Equal queries require 1 to 100 values")
			}
			f := tokenstore.Filter{Attribute: qq.Attribute}
			for _, v := range qq.Values {
				switch v := v.(type) {
				case string:
					f.Values = append(f.Values, v)
				case bool:
					f.Values = append(f.Values, strconv.FormatBool(v))
				case json.Number:
					f.Values = append(f.Values, v.String())
				default:
					return q, bad("Equal values must be strings, numbers or booleans")
				}
			}
			q.Equal = append(q.Equal, f)
		case "limit", "offset":
			n, ok := oneInt(qq.Values)
			if !ok || n < 0 || (qq.Method == "limit" && (n < 1 || n > 5000)) {
				return q, bad(qq.Method + " must be a whole number in range")
			}
			if qq.Method == "limit" {
				q.Limit = n
			} else {
				q.Offset = n
			}
		case "cursorAfter":
			if len(qq.Values) != 1 {
				return q, bad("Cursor queries take one value")
			}
			id, ok := qq.Values[0].(string)
			if !ok || !tokenstore.ValidID(id) {
				return q, bad("Cursor must be a valid id")
			}
			q.CursorAfter = id
		case "search":
			if len(qq.Values) != 1 {
				return q, bad("Search queries take one value")
			}
			s, _ := qq.Values[0].(string)
			q.Search = strings.TrimSpace(q.Search + " " + s)
		default:
			return q, bad("Query method not supported: " + qq.Method)
		}
	}
	return q, nil
}

func allowedAttr(a string) bool {
	for _, x := range tokenstore.UserAttributes {
		if a == x {
			return true
		}
	}
	return false
}

func oneInt(vs []any) (int, bool) {
	if len(vs) != 1 {
		return 0, false
	}
	n, ok := vs[0].(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return int(i), err == nil && i < 1<<31
}
