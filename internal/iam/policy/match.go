package policy

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A pattern is policy text compiled into atoms: literal runs, the two
// wildcards and policy variables. Variables stay atoms rather than being
// substituted into a string so that Evaluate does not allocate, and so
// that a variable's value is always matched literally: a user called "*"
// must not turn "user/${aws:username}" into "user/*".
type pattern []atom

type atomKind uint8

const (
	atomLit  atomKind = iota
	atomStar          // * : any run of characters, also empty
	atomOne           // ? : exactly one character
	atomVar           // ${key} or ${key, 'default'}
)

type atom struct {
	kind   atomKind
	text   string // literal text, or the lower-cased key of a variable
	def    string // default value of a variable
	hasDef bool
}

// patternOpts says which parts of the grammar a piece of policy text may
// use.
type patternOpts struct {
	wild bool // * and ? are wildcards (else literal)
	vars bool // ${...} is a policy variable (Version 2012-10-17 only)
}

var (
	errUnterminatedVar = errors.New("unterminated policy variable")
	errBadVar          = errors.New("malformed policy variable")
)

// compilePattern compiles s. Per reference_policies_variables, ${*}, ${?}
// and ${$} stand for the literal characters, and a variable may carry a
// default as ${key, 'default'}.
func compilePattern(s string, o patternOpts) (pattern, error) {
	var p pattern
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p = append(p, atom{kind: atomLit, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case o.vars && c == '$' && i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return nil, errUnterminatedVar
			}
			inner := s[i+2 : i+2+end]
			i += end + 3
			switch inner {
			case "*", "?", "$":
				lit.WriteString(inner)
				continue
			}
			a, err := parseVar(inner)
			if err != nil {
				return nil, err
			}
			flush()
			p = append(p, a)
		case o.wild && c == '*':
			flush()
			if len(p) == 0 || p[len(p)-1].kind != atomStar {
				p = append(p, atom{kind: atomStar})
			}
			i++
		case o.wild && c == '?':
			flush()
			p = append(p, atom{kind: atomOne})
			i++
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	return p, nil
}

// parseVar parses the inside of ${...}: a condition key, optionally
// followed by ", 'default'".
func parseVar(inner string) (atom, error) {
	key, def, hasDef := inner, "", false
	if k, rest, ok := strings.Cut(inner, ","); ok {
		key = k
		rest = strings.TrimSpace(rest)
		if len(rest) < 2 || rest[0] != '\'' || rest[len(rest)-1] != '\'' {
			return atom{}, errBadVar
		}
		def, hasDef = rest[1:len(rest)-1], true
		if strings.ContainsRune(def, '\'') {
			return atom{}, errBadVar
		}
	}
	key = strings.TrimSpace(key)
	if !validKey(key) {
		return atom{}, errBadVar
	}
	return atom{kind: atomVar, text: strings.ToLower(key), def: def, hasDef: hasDef}, nil
}

// validKey accepts condition-key names: "prefix:name", where name may
// carry a tag key after a slash (aws:ResourceTag/Project).
func validKey(k string) bool {
	prefix, name, ok := strings.Cut(k, ":")
	if !ok || prefix == "" || name == "" || len(k) > 256 {
		return false
	}
	for _, r := range k {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(":/_.-+=@", r):
		default:
			return false
		}
	}
	return true
}

// literal reports whether the pattern is one fixed string, and which.
func (p pattern) literal() (string, bool) {
	switch {
	case len(p) == 0:
		return "", true
	case len(p) == 1 && p[0].kind == atomLit:
		return p[0].text, true
	}
	return "", false
}

func (p pattern) hasVars() bool {
	for _, a := range p {
		if a.kind == atomVar {
			return true
		}
	}
	return false
}

// match reports whether s matches p. It is the classic wildcard matcher
// that backtracks only to the most recent star, which is exact for glob
// patterns and runs in O(len(p)·len(s)) at worst. A variable that cannot
// be resolved matches nothing (reference_policies_variables: "any attempt
// to match it fails").
func (p pattern) match(s string, fold bool, ev *evalCtx) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for {
		if pi < len(p) {
			a := &p[pi]
			switch a.kind {
			case atomStar:
				starP, starS = pi, si
				pi++
				continue
			case atomOne:
				if si < len(s) {
					_, n := utf8.DecodeRuneInString(s[si:])
					si += n
					pi++
					continue
				}
			default:
				t := a.text
				if a.kind == atomVar {
					v, ok := ev.variable(a)
					if !ok {
						return false
					}
					t = v
				}
				if n, ok := hasPrefix(s[si:], t, fold); ok {
					si += n
					pi++
					continue
				}
			}
		} else if si == len(s) {
			return true
		}
		if starP < 0 || starS >= len(s) {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		si, pi = starS, starP+1
	}
}

// hasPrefix reports whether s starts with t, case-folded if fold, and how
// many bytes of s that prefix takes (under Unicode folding it may differ
// from len(t): K and the Kelvin sign fold together).
func hasPrefix(s, t string, fold bool) (int, bool) {
	if !fold {
		if strings.HasPrefix(s, t) {
			return len(t), true
		}
		return 0, false
	}
	i := 0
	for _, tr := range t {
		if i >= len(s) {
			return 0, false
		}
		sr, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if sr != tr && !equalFoldRune(sr, tr) {
			return 0, false
		}
	}
	return i, true
}

// equalFoldRune is the rune step of strings.EqualFold.
func equalFoldRune(a, b rune) bool {
	if a < utf8.RuneSelf && b < utf8.RuneSelf {
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		return a == b
	}
	for r := unicode.SimpleFold(a); r != a; r = unicode.SimpleFold(r) {
		if r == b {
			return true
		}
	}
	return false
}

// arnPattern matches ARNs segment by segment: per
// reference_policies_elements_resource, wildcards work "within any ARN
// segment (the parts separated by colons)", so a star in the region never
// swallows the account. The last segment is the resource and may itself
// contain colons.
type arnPattern struct {
	all bool // the pattern "*"
	seg [6]pattern
}

var (
	errNotARN     = errors.New(`must be "*" or an ARN arn:partition:service:region:account:resource`)
	errPartition  = errors.New(`ARN partition must be "azote"`)
	errVarSegment = errors.New("a policy variable may only be used in the resource part of an ARN (after the fifth colon)")
)

// compileARN compiles an ARN pattern. resourceVarsOnly enforces the
// Resource-element rule that variables appear only after the fifth colon
// (reference_policies_variables, "Resource element").
func compileARN(s string, o patternOpts, resourceVarsOnly bool) (arnPattern, error) {
	if s == "*" && o.wild {
		return arnPattern{all: true}, nil
	}
	parts, ok := splitARNPattern(s, o.vars)
	if !ok || parts[0] != "arn" || parts[2] == "" || parts[5] == "" {
		return arnPattern{}, errNotARN
	}
	if parts[1] != "azote" && !(o.wild && parts[1] == "*") {
		return arnPattern{}, errPartition
	}
	var ap arnPattern
	for i, part := range parts {
		p, err := compilePattern(part, o)
		if err != nil {
			return arnPattern{}, err
		}
		if i < 5 && resourceVarsOnly && p.hasVars() {
			return arnPattern{}, errVarSegment
		}
		ap.seg[i] = p
	}
	return ap, nil
}

// splitARNPattern splits policy text at its first five colons, skipping
// colons inside ${...} (variables such as ${aws:username} contain one).
func splitARNPattern(s string, vars bool) ([6]string, bool) {
	var parts [6]string
	n, start := 0, 0
	for i := 0; i < len(s) && n < 5; i++ {
		switch {
		case vars && s[i] == '$' && i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return parts, false
			}
			i += end + 2
		case s[i] == ':':
			parts[n] = s[start:i]
			n++
			start = i + 1
		}
	}
	if n < 5 {
		return parts, false
	}
	parts[5] = s[start:]
	return parts, true
}

// splitARN splits a request ARN into its six segments without allocating.
func splitARN(s string) ([6]string, bool) {
	var parts [6]string
	for i := range 5 {
		j := strings.IndexByte(s, ':')
		if j < 0 {
			return parts, false
		}
		parts[i], s = s[:j], s[j+1:]
	}
	parts[5] = s
	return parts, parts[0] == "arn"
}

func (ap *arnPattern) match(s string, ev *evalCtx) bool {
	if ap.all {
		return true
	}
	parts, ok := splitARN(s)
	if !ok {
		return false
	}
	for i := range parts {
		if !ap.seg[i].match(parts[i], false, ev) {
			return false
		}
	}
	return true
}

// accountOf returns the account segment of an ARN, "" if it has none.
func accountOf(arn string) string {
	parts, ok := splitARN(arn)
	if !ok {
		return ""
	}
	return parts[4]
}
