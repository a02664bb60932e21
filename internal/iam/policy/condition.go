package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Conditions is a Condition element: operator → condition key → values.
// Keys and operators keep the spelling of the policy text; values are
// strings (JSON booleans and numbers are kept as their text).
type Conditions map[string]map[string][]string

type family uint8

const (
	famString family = iota
	famStringFold
	famStringLike
	famNumeric
	famDate
	famBool
	famIP
	famARN
	famNull
)

type comparison uint8

const (
	cmpEq comparison = iota
	cmpLT
	cmpLE
	cmpGT
	cmpGE
)

type setQualifier uint8

const (
	setNone setQualifier = iota
	setAnyValue
	setAllValues
)

type operator struct {
	fam    family
	cmp    comparison
	negate bool
}

// operators is every base operator of reference_policies_elements_
// condition_operators that azote supports. BinaryEquals is left out: no
// azote condition key carries binary data, and an operator that is
// accepted but never matches would be a trap.
var operators = map[string]operator{
	"StringEquals":              {fam: famString},
	"StringNotEquals":           {fam: famString, negate: true},
	"StringEqualsIgnoreCase":    {fam: famStringFold},
	"StringNotEqualsIgnoreCase": {fam: famStringFold, negate: true},
	"StringLike":                {fam: famStringLike},
	"StringNotLike":             {fam: famStringLike, negate: true},
	"NumericEquals":             {fam: famNumeric},
	"NumericNotEquals":          {fam: famNumeric, negate: true},
	"NumericLessThan":           {fam: famNumeric, cmp: cmpLT},
	"NumericLessThanEquals":     {fam: famNumeric, cmp: cmpLE},
	"NumericGreaterThan":        {fam: famNumeric, cmp: cmpGT},
	"NumericGreaterThanEquals":  {fam: famNumeric, cmp: cmpGE},
	"DateEquals":                {fam: famDate},
	"DateNotEquals":             {fam: famDate, negate: true},
	"DateLessThan":              {fam: famDate, cmp: cmpLT},
	"DateLessThanEquals":        {fam: famDate, cmp: cmpLE},
	"DateGreaterThan":           {fam: famDate, cmp: cmpGT},
	"DateGreaterThanEquals":     {fam: famDate, cmp: cmpGE},
	"Bool":                      {fam: famBool},
	"IpAddress":                 {fam: famIP},
	"NotIpAddress":              {fam: famIP, negate: true},
	// ArnEquals and ArnLike "behave identically", as do their negations.
	"ArnEquals":    {fam: famARN},
	"ArnLike":      {fam: famARN},
	"ArnNotEquals": {fam: famARN, negate: true},
	"ArnNotLike":   {fam: famARN, negate: true},
	"Null":         {fam: famNull},
}

// cond is one (operator, key) pair of a Condition block, compiled.
type cond struct {
	operator
	set      setQualifier
	ifExists bool
	key      string // lower-cased: condition keys are case-insensitive
	clock    bool   // key is aws:CurrentTime or aws:EpochTime

	strs     []pattern // famString, famStringFold, famStringLike
	nums     []float64
	times    []time.Time
	bools    []bool
	prefixes []netip.Prefix
	arns     []arnPattern
	nullTrue bool // Null: "true" listed (key must be absent)
	nullFals bool // Null: "false" listed (key must be present)
}

var errUnknownOperator = errors.New("unknown condition operator")

// parseOperator splits "ForAnyValue:StringLikeIfExists" into its parts.
func parseOperator(name string) (operator, setQualifier, bool, error) {
	base, set := name, setNone
	if b, ok := strings.CutPrefix(base, "ForAnyValue:"); ok {
		base, set = b, setAnyValue
	} else if b, ok := strings.CutPrefix(base, "ForAllValues:"); ok {
		base, set = b, setAllValues
	}
	b, ifExists := strings.CutSuffix(base, "IfExists")
	op, ok := operators[b]
	if !ok {
		return operator{}, 0, false, fmt.Errorf("%w %s", errUnknownOperator, quote(name))
	}
	// "You can add IfExists to the end of any condition operator name
	// except the Null condition"; a set of key presences makes no sense.
	if op.fam == famNull && (ifExists || set != setNone) {
		return operator{}, 0, false, fmt.Errorf("%w %s: Null takes neither IfExists nor a set qualifier", errUnknownOperator, quote(name))
	}
	return op, set, ifExists, nil
}

// compileCond compiles the values of one key under one operator. vars says
// whether policy variables are recognised (Version 2012-10-17); per
// reference_policies_variables they are allowed only with the string and
// ARN operators.
func compileCond(opName, key string, values []string, vars bool) (cond, error) {
	op, set, ifExists, err := parseOperator(opName)
	if err != nil {
		return cond{}, err
	}
	if !validKey(key) {
		return cond{}, fmt.Errorf("condition key %s is not of the form prefix:name", quote(key))
	}
	if len(values) == 0 {
		return cond{}, fmt.Errorf("%s %s: no values", opName, quote(key))
	}
	c := cond{operator: op, set: set, ifExists: ifExists, key: strings.ToLower(key)}
	c.clock = c.key == "aws:currenttime" || c.key == "aws:epochtime"
	for _, v := range values {
		if err := c.addValue(v, vars); err != nil {
			return cond{}, fmt.Errorf("%s %s: value %s: %w", opName, quote(key), quote(v), err)
		}
	}
	return c, nil
}

func (c *cond) addValue(v string, vars bool) error {
	switch c.fam {
	case famString, famStringFold:
		p, err := compilePattern(v, patternOpts{vars: vars})
		if err != nil {
			return err
		}
		c.strs = append(c.strs, p)
	case famStringLike:
		p, err := compilePattern(v, patternOpts{wild: true, vars: vars})
		if err != nil {
			return err
		}
		c.strs = append(c.strs, p)
	case famNumeric:
		f, err := parseNumber(v)
		if err != nil {
			return err
		}
		c.nums = append(c.nums, f)
	case famDate:
		t, err := parseDate(v)
		if err != nil {
			return err
		}
		c.times = append(c.times, t)
	case famBool:
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		c.bools = append(c.bools, b)
	case famIP:
		p, err := parsePrefix(v)
		if err != nil {
			return err
		}
		c.prefixes = append(c.prefixes, p)
	case famARN:
		ap, err := compileARN(v, patternOpts{wild: true, vars: vars}, false)
		if err != nil {
			return err
		}
		c.arns = append(c.arns, ap)
	case famNull:
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		if b {
			c.nullTrue = true
		} else {
			c.nullFals = true
		}
	}
	return nil
}

func parseNumber(v string) (float64, error) {
	// ParseFloat also takes "NaN", "Inf" and hex floats; a policy number
	// is decimal.
	for _, r := range v {
		if !(r >= '0' && r <= '9' || strings.ContainsRune("+-.eE", r)) {
			return 0, errors.New("not a decimal number")
		}
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, errors.New("not a decimal number")
	}
	return f, nil
}

// dateLayouts are the W3C profiles of ISO 8601 that a policy date may use
// (reference_policies_elements_condition_operators, "Date condition
// operators"), most specific first. Epoch seconds are handled apart.
var dateLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02"}

func parseDate(v string) (time.Time, error) {
	if v != "" && strings.Trim(v, "0123456789") == "" && len(v) <= 12 {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err == nil {
			return time.Unix(sec, 0).UTC(), nil
		}
	}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not an RFC 3339 date or epoch seconds")
}

func parseBool(v string) (bool, error) {
	switch {
	case strings.EqualFold(v, "true"):
		return true, nil
	case strings.EqualFold(v, "false"):
		return false, nil
	}
	return false, errors.New(`must be "true" or "false"`)
}

// parsePrefix takes a CIDR block or a bare address, which "IAM uses the
// default prefix value of /32" for (and /128 for IPv6).
func parsePrefix(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, errors.New("not a CIDR block")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("not an IP address")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// eval decides the condition for the request. The rules for a missing key
// come from reference_policies_elements_condition_operators ("If the key
// that you specify in a policy condition is not present in the request
// context, the values do not match and the condition is false. If the
// policy condition requires that the key is not matched, such as
// StringNotLike or ArnNotLike, and the right key is not present, the
// condition is true", with IfExists and Null the exceptions) and from
// reference_policies_multi-value-conditions (ForAllValues "returns true if
// there are no keys in the request"; ForAnyValue "for no matching key or a
// null dataset, the condition returns false").
func (c *cond) eval(ev *evalCtx) bool {
	values := ev.lookup(c.key)
	present := len(values) > 0
	if c.fam == famNull {
		return c.nullTrue && !present || c.nullFals && present
	}
	if !present {
		if c.clock && c.fam == famDate {
			// aws:CurrentTime is in every AWS request; a caller that did
			// not set it gets the clock rather than a silently false
			// date window. One value: every set qualifier agrees.
			return c.matchTime(ev.now()) != c.negate
		}
		switch {
		case c.ifExists:
			return true
		case c.set == setAllValues:
			return true
		case c.set == setAnyValue:
			return false
		}
		return c.negate
	}
	switch c.set {
	case setAnyValue:
		for _, v := range values {
			if c.matchValue(v, ev) != c.negate {
				return true
			}
		}
		return false
	case setAllValues:
		for _, v := range values {
			if c.matchValue(v, ev) == c.negate {
				return false
			}
		}
		return true
	}
	// A negated operator with several policy values is their NOR
	// (reference_policies_condition-logic-multiple-context-keys-or-values):
	// the negation of "some request value matches some policy value".
	matched := false
	for _, v := range values {
		if c.matchValue(v, ev) {
			matched = true
			break
		}
	}
	return matched != c.negate
}

// matchValue reports whether one request value matches any policy value
// under the positive form of the operator.
func (c *cond) matchValue(v string, ev *evalCtx) bool {
	switch c.fam {
	case famString, famStringFold:
		fold := c.fam == famStringFold
		for _, p := range c.strs {
			if lit, ok := p.literal(); ok {
				if v == lit || fold && strings.EqualFold(v, lit) {
					return true
				}
				continue
			}
			if p.match(v, fold, ev) {
				return true
			}
		}
	case famStringLike:
		for _, p := range c.strs {
			if p.match(v, false, ev) {
				return true
			}
		}
	case famNumeric:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return false
		}
		for _, n := range c.nums {
			if compare(c.cmp, cmpFloat(f, n)) {
				return true
			}
		}
	case famDate:
		t, err := parseDate(v)
		if err != nil {
			return false
		}
		return c.matchTime(t)
	case famBool:
		b, err := parseBool(v)
		if err != nil {
			return false
		}
		for _, want := range c.bools {
			if b == want {
				return true
			}
		}
	case famIP:
		a, err := netip.ParseAddr(v)
		if err != nil {
			return false
		}
		a = a.Unmap()
		for _, p := range c.prefixes {
			if p.Contains(a) {
				return true
			}
		}
	case famARN:
		for i := range c.arns {
			if c.arns[i].match(v, ev) {
				return true
			}
		}
	}
	return false
}

func (c *cond) matchTime(t time.Time) bool {
	for _, want := range c.times {
		if compare(c.cmp, t.Compare(want)) {
			return true
		}
	}
	return false
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	case a == b:
		return 0
	}
	return 2 // NaN: unordered, matches nothing
}

// compare applies the operator's comparison to the sign of request−policy.
func compare(op comparison, sign int) bool {
	switch op {
	case cmpEq:
		return sign == 0
	case cmpLT:
		return sign == -1
	case cmpLE:
		return sign == -1 || sign == 0
	case cmpGT:
		return sign == 1
	case cmpGE:
		return sign == 1 || sign == 0
	}
	return false
}
