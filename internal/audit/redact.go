package audit

// Hidden replaces the value of every secret-looking key, as CloudTrail
// does for request parameters it must not record.
const Hidden = "HIDDEN_DUE_TO_SECURITY_REASONS"

// secretWords are matched against a key lower-cased with separators
// removed, so "private_key", "Private-Key" and "privateKey" all match
// "privatekey", and "key material" matches "keymaterial". "code" is broad
// on purpose: an MFA code is a credential, and hiding an exit code is a
// cheaper mistake than recording a one-time password. "seed" and "uri"
// cover MFA enrolment answers: the seed, and the otpauth:// URI that
// carries it.
var secretWords = []string{
	"secret", "password", "token", "plaintext", "privatekey",
	"keymaterial", "code", "authorization", "seed", "uri",
}

// Redact returns a deep copy of m in which the value of every key that looks
// secret, at any depth, is replaced by Hidden. Maps and slices of the JSON
// shapes (map[string]any, []any, []map[string]any, []string) are copied;
// other values are immutable or opaque and are shared.
func Redact(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if secretKey(k) {
			out[k] = Hidden
			continue
		}
		out[k] = redactValue(v)
	}
	return out
}

func redactValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return Redact(v)
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = redactValue(e)
		}
		return c
	case []map[string]any:
		c := make([]map[string]any, len(v))
		for i, e := range v {
			c[i] = Redact(e)
		}
		return c
	case []string:
		return append([]string(nil), v...)
	default:
		return v
	}
}

// needsRedaction reports whether Redact would hide anything in m. Append
// calls it so the common case, nothing secret, costs a walk and no copy.
func needsRedaction(m map[string]any) bool {
	for k, v := range m {
		if secretKey(k) || valueNeedsRedaction(v) {
			return true
		}
	}
	return false
}

func valueNeedsRedaction(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		return needsRedaction(v)
	case []any:
		for _, e := range v {
			if valueNeedsRedaction(e) {
				return true
			}
		}
	case []map[string]any:
		for _, e := range v {
			if needsRedaction(e) {
				return true
			}
		}
	}
	return false
}

// secretKey reports whether key contains one of secretWords once folded to
// lower case without '_', '-', ' ' and '.'. Keys up to 64 bytes fold into a
// stack buffer; longer ones are rare enough to allocate.
func secretKey(key string) bool {
	var stack [64]byte
	folded := stack[:0]
	if len(key) > len(stack) {
		folded = make([]byte, 0, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '_' || c == '-' || c == ' ' || c == '.':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		folded = append(folded, c)
	}
	for _, w := range secretWords {
		if containsFold(folded, w) {
			return true
		}
	}
	return false
}

func containsFold(s []byte, word string) bool {
	n := len(word)
	for i := 0; i+n <= len(s); i++ {
		if string(s[i:i+n]) == word {
			return true
		}
	}
	return false
}
