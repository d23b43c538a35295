package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Duration is a config duration: a Go duration string ("5s", "15m") or a
// whole number of seconds (5). A value it cannot read does not fail the
// decode, so that a plugin's Validate can report it under its key together
// with every other problem; Check says what is wrong with it.
type Duration struct {
	time.Duration
	bad string // what could not be read, quoted as it came
}

// UnmarshalJSON reads a duration string or a number of seconds. A value it
// cannot read is kept for Check to report.
func (d *Duration) UnmarshalJSON(b []byte) error {
	d.bad = ""
	b = bytes.TrimSpace(b)
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			if n, err2 := strconv.ParseInt(s, 10, 64); err2 == nil && n >= 0 && n <= math.MaxInt64/int64(time.Second) {
				v, err = time.Duration(n)*time.Second, nil
			}
		}
		if err != nil {
			d.bad = strconv.Quote(s)
			return nil
		}
		d.Duration = v
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		if i, err := n.Int64(); err == nil && i >= 0 && i <= math.MaxInt64/int64(time.Second) {
			d.Duration = time.Duration(i) * time.Second
			return nil
		}
	}
	d.bad = string(b)
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Check returns what is wrong with d for a key that must be above 0 and at
// most max, or "" when nothing is: a value that was not a duration, or one
// out of that range.
func (d Duration) Check(max time.Duration) string {
	switch {
	case d.bad != "":
		return "want a duration such as \"5s\" or whole seconds, got " + d.bad
	case d.Duration <= 0 || d.Duration > max:
		return fmt.Sprintf("must be above 0 and at most %s, got %s", max, d.Duration)
	}
	return ""
}
