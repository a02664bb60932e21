package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxSize is the largest policy document Parse accepts, in bytes (the
// limit of an AWS managed policy is 6 KiB; azote leaves some room).
const MaxSize = 10 << 10

var (
	ErrTooLarge = errors.New("policy: document larger than 10 KiB")
	ErrSyntax   = errors.New("policy: not a well-formed JSON object")
	ErrInvalid  = errors.New("policy: invalid document")
	ErrKind     = errors.New("policy: not allowed in this kind of policy")
)

// Supported values of the Version element. Policy variables exist only in
// 2012-10-17; under 2008-10-17 "${aws:username}" is literal text
// (reference_policies_elements_version).
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17"
)

// Document is a parsed policy. Version, ID and Statements are a read-only
// view of what was parsed; evaluation uses the form compiled by Parse, so
// editing them changes what Marshal writes but not any decision — parse
// the edited text again for that.
type Document struct {
	Version    string
	ID         string
	Statements []Statement

	source   []byte
	compiled []compiled
	parsed   bool
}

// Statement is one element of the Statement array.
type Statement struct {
	Sid, Effect             string
	Principal, NotPrincipal *Principals
	Action, NotAction       []string
	Resource, NotResource   []string
	Condition               Conditions
}

// compiled is a Statement ready for Evaluate.
type compiled struct {
	deny         bool
	label        string // "#Sid", or "#index" when the statement has no Sid
	notAction    bool
	actions      []pattern
	hasResource  bool
	notResource  bool
	resources    []arnPattern
	principal    *principalSet
	notPrincipal bool
	conds        []cond
	vars         []atom // variables without a default, checked for Allow
}

// Source returns the text the document was parsed from. The caller must
// not modify it.
func (d *Document) Source() []byte { return d.source }

// Parse reads and compiles a policy document. Errors wrap ErrTooLarge,
// ErrSyntax or ErrInvalid and name the statement and element at fault.
func Parse(data []byte) (*Document, error) {
	if len(data) > MaxSize {
		return nil, ErrTooLarge
	}
	if err := checkJSON(data); err != nil {
		return nil, err
	}
	top, err := object(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	for k := range top {
		switch k {
		case "Version", "Id", "Statement":
		default:
			return nil, fmt.Errorf("%w: unknown element %s", ErrInvalid, quote(k))
		}
	}
	d := &Document{source: bytes.Clone(data), parsed: true}
	raw, ok := top["Version"]
	if !ok {
		return nil, fmt.Errorf("%w: Version is required", ErrInvalid)
	}
	if d.Version, err = str(raw); err != nil || d.Version != Version2012 && d.Version != Version2008 {
		return nil, fmt.Errorf(`%w: Version must be "2012-10-17" or "2008-10-17"`, ErrInvalid)
	}
	if raw, ok := top["Id"]; ok {
		if d.ID, err = str(raw); err != nil {
			return nil, fmt.Errorf("%w: Id: %w", ErrInvalid, err)
		}
	}
	raw, ok = top["Statement"]
	if !ok {
		return nil, fmt.Errorf("%w: Statement is required", ErrInvalid)
	}
	var raws []json.RawMessage
	switch raw[0] {
	case '{':
		raws = []json.RawMessage{raw}
	case '[':
		if err := json.Unmarshal(raw, &raws); err != nil {
			return nil, fmt.Errorf("%w: Statement: %w", ErrSyntax, err)
		}
	default:
		return nil, fmt.Errorf("%w: Statement must be an object or an array of objects", ErrInvalid)
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("%w: Statement is empty", ErrInvalid)
	}
	sids := make(map[string]int)
	for i, r := range raws {
		st, c, err := parseStatement(r, i, d.Version == Version2012)
		if err != nil {
			return nil, err
		}
		if st.Sid != "" {
			// "In IAM, the Sid value must be unique within a JSON policy."
			if j, dup := sids[st.Sid]; dup {
				return nil, fmt.Errorf("%w: Statement[%d]: Sid %s already used by Statement[%d]", ErrInvalid, i, quote(st.Sid), j)
			}
			sids[st.Sid] = i
		}
		d.Statements = append(d.Statements, st)
		d.compiled = append(d.compiled, c)
	}
	return d, nil
}

var statementKeys = map[string]bool{
	"Sid": true, "Effect": true, "Principal": true, "NotPrincipal": true,
	"Action": true, "NotAction": true, "Resource": true, "NotResource": true,
	"Condition": true,
}

func parseStatement(raw json.RawMessage, i int, vars bool) (Statement, compiled, error) {
	var st Statement
	var c compiled
	where := fmt.Sprintf("Statement[%d]", i)
	fail := func(format string, args ...any) (Statement, compiled, error) {
		return Statement{}, compiled{}, fmt.Errorf("%w: %s: %w", ErrInvalid, where, fmt.Errorf(format, args...))
	}
	obj, err := object(raw)
	if err != nil {
		return fail("a statement must be an object")
	}
	if r, ok := obj["Sid"]; ok {
		s, err := str(r)
		if err != nil {
			return fail("Sid: %w", err)
		}
		// "The Sid element supports ASCII uppercase letters (A-Z),
		// lowercase letters (a-z), and numbers (0-9)."
		if strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" || len(s) > 128 {
			return fail("Sid %s: only ASCII letters and digits are allowed", quote(s))
		}
		st.Sid = s
		if s != "" {
			where += fmt.Sprintf(" (Sid %s)", quote(s))
		}
	}
	for k := range obj {
		if !statementKeys[k] {
			return fail("unknown element %s", quote(k))
		}
	}
	c.label = "#" + st.Sid
	if st.Sid == "" {
		c.label = "#" + strconv.Itoa(i)
	}

	r, ok := obj["Effect"]
	if !ok {
		return fail("Effect is required")
	}
	st.Effect, err = str(r)
	if err != nil || st.Effect != "Allow" && st.Effect != "Deny" {
		return fail(`Effect must be "Allow" or "Deny"`)
	}
	c.deny = st.Effect == "Deny"

	// Actions.
	ra, hasA := obj["Action"]
	rna, hasNA := obj["NotAction"]
	if hasA == hasNA {
		return fail("exactly one of Action and NotAction is required")
	}
	name := "Action"
	if hasNA {
		ra, name, c.notAction = rna, "NotAction", true
	}
	list, err := stringList(ra)
	if err != nil {
		return fail("%s: %w", name, err)
	}
	for _, a := range list {
		p, err := compileAction(a)
		if err != nil {
			return fail("%s %s: %w", name, quote(a), err)
		}
		c.actions = append(c.actions, p)
	}
	if hasNA {
		st.NotAction = list
	} else {
		st.Action = list
	}

	// Resources.
	rr, hasR := obj["Resource"]
	rnr, hasNR := obj["NotResource"]
	if hasR && hasNR {
		return fail("Resource and NotResource cannot both be given")
	}
	if hasR || hasNR {
		name := "Resource"
		if hasNR {
			rr, name, c.notResource = rnr, "NotResource", true
		}
		list, err := stringList(rr)
		if err != nil {
			return fail("%s: %w", name, err)
		}
		for _, s := range list {
			ap, err := compileARN(s, patternOpts{wild: true, vars: vars}, true)
			if err != nil {
				return fail("%s %s: %w", name, quote(s), err)
			}
			c.resources = append(c.resources, ap)
		}
		c.hasResource = true
		if hasNR {
			st.NotResource = list
		} else {
			st.Resource = list
		}
	}

	// Principals.
	rp, hasP := obj["Principal"]
	rnp, hasNP := obj["NotPrincipal"]
	if hasP && hasNP {
		return fail("Principal and NotPrincipal cannot both be given")
	}
	if hasP || hasNP {
		name := "Principal"
		if hasNP {
			rp, name, c.notPrincipal = rnp, "NotPrincipal", true
		}
		p, ps, err := parsePrincipals(rp)
		if err != nil {
			return fail("%s: %w", name, err)
		}
		c.principal = ps
		if hasNP {
			st.NotPrincipal = p
		} else {
			st.Principal = p
		}
	}

	// Conditions.
	if rc, ok := obj["Condition"]; ok {
		ops, err := object(rc)
		if err != nil {
			return fail("Condition must be an object")
		}
		st.Condition = make(Conditions, len(ops))
		for op, rk := range ops {
			keys, err := object(rk)
			if err != nil || len(keys) == 0 {
				return fail("Condition %s must be a non-empty object of keys", quote(op))
			}
			st.Condition[op] = make(map[string][]string, len(keys))
			for key, rv := range keys {
				values, err := condValues(rv)
				if err != nil {
					return fail("Condition %s %s: %w", quote(op), quote(key), err)
				}
				cd, err := compileCond(op, key, values, vars)
				if err != nil {
					return fail("Condition %w", err)
				}
				st.Condition[op][key] = values
				c.conds = append(c.conds, cd)
			}
		}
	}
	c.vars = statementVars(&c)
	return st, c, nil
}

// compileAction checks "service:Name" (either part may hold wildcards) or
// "*" and compiles it; actions match case-insensitively.
func compileAction(a string) (pattern, error) {
	svc, name, ok := strings.Cut(a, ":")
	if a != "*" && (!ok || svc == "" || name == "") {
		return nil, errors.New(`must be "*" or service:Name`)
	}
	for _, r := range svc + name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '*' || r == '?' || r == '-' || r == '_':
		default:
			return nil, fmt.Errorf("character %q is not allowed in an action", r)
		}
	}
	return compilePattern(a, patternOpts{wild: true})
}

// statementVars lists the variables of c that have no default, once each.
func statementVars(c *compiled) []atom {
	var out []atom
	add := func(p pattern) {
		for _, a := range p {
			if a.kind != atomVar || a.hasDef {
				continue
			}
			dup := false
			for _, o := range out {
				dup = dup || o.text == a.text
			}
			if !dup {
				out = append(out, a)
			}
		}
	}
	for i := range c.resources {
		for _, p := range c.resources[i].seg {
			add(p)
		}
	}
	for i := range c.conds {
		for _, p := range c.conds[i].strs {
			add(p)
		}
		for j := range c.conds[i].arns {
			for _, p := range c.conds[i].arns[j].seg {
				add(p)
			}
		}
	}
	return out
}

// checkJSON rejects what encoding/json would let through silently: a
// duplicate key (the last one would win, so {"Effect":"Deny",
// "Effect":"Allow"} would read as an Allow to one tool and a Deny to
// another), trailing data, invalid UTF-8, deep nesting, and a top level
// that is not an object.
func checkJSON(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: not valid UTF-8", ErrSyntax)
	}
	type frame struct {
		obj     bool
		keyNext bool
		seen    map[string]bool
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	done := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !done {
				return fmt.Errorf("%w: empty document", ErrSyntax)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSyntax, err)
		}
		if done {
			return fmt.Errorf("%w: data after the top-level object", ErrSyntax)
		}
		if len(stack) == 0 {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return fmt.Errorf("%w: the document must be a JSON object", ErrSyntax)
			}
		}
		if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].keyNext {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
			} else {
				k, _ := tok.(string)
				if stack[n-1].seen[k] {
					return fmt.Errorf("%w: duplicate key %s", ErrSyntax, quote(k))
				}
				stack[n-1].seen[k] = true
				stack[n-1].keyNext = false
				continue
			}
		} else if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, frame{obj: true, keyNext: true, seen: map[string]bool{}})
			case '[':
				stack = append(stack, frame{})
			default: // ']' ('}' is handled above: keyNext is true after a value)
				stack = stack[:len(stack)-1]
			}
			if len(stack) > 8 {
				return fmt.Errorf("%w: nested too deeply", ErrSyntax)
			}
			if d == '{' || d == '[' {
				continue
			}
		}
		// A value (scalar or just-closed container) is complete.
		if n := len(stack); n == 0 {
			done = true
		} else if stack[n-1].obj {
			stack[n-1].keyNext = true
		}
	}
}

// object decodes a JSON object into its raw members.
func object(raw []byte) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("not an object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func str(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", errors.New("must be a string")
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// stringList reads a string or a non-empty array of strings.
func stringList(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		s, err := str(raw)
		return []string{s}, err
	}
	if len(raw) == 0 || raw[0] != '[' {
		return nil, errors.New("must be a string or an array of strings")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, errors.New("must not be empty")
	}
	out := make([]string, len(items))
	for i, it := range items {
		s, err := str(it)
		if err != nil {
			return nil, errors.New("must be a string or an array of strings")
		}
		out[i] = s
	}
	return out, nil
}

// condValues reads a condition value: a string, number or boolean, or a
// non-empty array of them. Numbers and booleans keep their JSON text.
func condValues(raw json.RawMessage) ([]string, error) {
	scalar := func(r json.RawMessage) (string, error) {
		r = bytes.TrimSpace(r)
		switch {
		case len(r) == 0:
		case r[0] == '"':
			return str(r)
		case string(r) == "true" || string(r) == "false":
			return string(r), nil
		case r[0] == '-' || r[0] >= '0' && r[0] <= '9':
			return string(r), nil
		}
		return "", errors.New("values must be strings, numbers or booleans")
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		s, err := scalar(raw)
		return []string{s}, err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, errors.New("no values")
	}
	out := make([]string, len(items))
	for i, it := range items {
		s, err := scalar(it)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// quote quotes user text for an error message, cut to a readable length.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// stringOrList marshals one value as a string, several as an array, the
// way AWS writes policies.
type stringOrList []string

func (l stringOrList) MarshalJSON() ([]byte, error) {
	if len(l) == 1 {
		return marshalNoEscape(l[0])
	}
	return marshalNoEscape([]string(l))
}

// marshalNoEscape is json.Marshal without HTML escaping, so that "<" in a
// condition value stays one byte and a marshalled policy stays within
// MaxSize when its source did.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

type statementJSON struct {
	Sid          string                             `json:"Sid,omitempty"`
	Effect       string                             `json:"Effect"`
	Principal    *Principals                        `json:"Principal,omitempty"`
	NotPrincipal *Principals                        `json:"NotPrincipal,omitempty"`
	Action       stringOrList                       `json:"Action,omitempty"`
	NotAction    stringOrList                       `json:"NotAction,omitempty"`
	Resource     stringOrList                       `json:"Resource,omitempty"`
	NotResource  stringOrList                       `json:"NotResource,omitempty"`
	Condition    map[string]map[string]stringOrList `json:"Condition,omitempty"`
}

// MarshalJSON writes the document in the form Parse reads (Statement
// always an array, single values as strings, keys in AWS order).
func (d Document) MarshalJSON() ([]byte, error) {
	out := struct {
		Version   string          `json:"Version"`
		ID        string          `json:"Id,omitempty"`
		Statement []statementJSON `json:"Statement"`
	}{Version: d.Version, ID: d.ID, Statement: make([]statementJSON, len(d.Statements))}
	for i, st := range d.Statements {
		sj := statementJSON{
			Sid: st.Sid, Effect: st.Effect,
			Principal: st.Principal, NotPrincipal: st.NotPrincipal,
			Action: st.Action, NotAction: st.NotAction,
			Resource: st.Resource, NotResource: st.NotResource,
		}
		if len(st.Condition) > 0 {
			sj.Condition = make(map[string]map[string]stringOrList, len(st.Condition))
			for op, keys := range st.Condition {
				m := make(map[string]stringOrList, len(keys))
				for k, v := range keys {
					m[k] = v
				}
				sj.Condition[op] = m
			}
		}
		out.Statement[i] = sj
	}
	return marshalNoEscape(out)
}

// UnmarshalJSON parses data with Parse, so a Document embedded in an API
// body is checked as strictly as one parsed directly.
func (d *Document) UnmarshalJSON(data []byte) error {
	p, err := Parse(data)
	if err != nil {
		return err
	}
	*d = *p
	return nil
}
