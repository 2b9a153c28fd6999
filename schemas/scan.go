package schemas

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// The scanner below walks JSON that validJSON has already accepted, so it
// never reports syntax errors: it only has to find where values start and
// end. That lets Parse read every member of an object in document order,
// see duplicate keys (encoding/json keeps the last one silently) and keep
// raw values for later, all in one cheap pass without building maps.

// isSpace reports JSON insignificant whitespace (RFC 8259 ws).
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	return i
}

// skipString returns the index just past the string literal starting at data[i] == '"'.
func skipString(data []byte, i int) int {
	i++
	for i < len(data) {
		switch data[i] {
		case '\\':
			i += 2
		case '"':
			return i + 1
		default:
			i++
		}
	}
	return i
}

// skipValue returns the index just past the value starting at data[i].
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(data) {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// members iterates the members of a valid JSON object, in document order.
type members struct {
	data []byte
	pos  int
	key  []byte // raw key literal, quotes included
	val  []byte // raw value
}

// newMembers starts iterating the object obj (obj[0] == '{', already valid).
func newMembers(obj []byte) members {
	return members{data: obj, pos: 1}
}

func (m *members) next() bool {
	i := skipSpace(m.data, m.pos)
	if i >= len(m.data) || m.data[i] == '}' {
		return false
	}
	if m.data[i] == ',' {
		i = skipSpace(m.data, i+1)
	}
	end := skipString(m.data, i)
	m.key = m.data[i:end]
	i = skipSpace(m.data, end)
	i = skipSpace(m.data, i+1) // ':'
	end = skipValue(m.data, i)
	m.val = m.data[i:end]
	m.pos = end
	return true
}

// keyIs reports whether the current key, unescaped, equals name. The
// common unescaped case compares bytes without allocating.
func (m *members) keyIs(name string) bool {
	inner := m.key[1 : len(m.key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	s, _ := stringValue(m.key)
	return s == name
}

// keyString returns the current key, unescaped.
func (m *members) keyString() string {
	s, _ := stringValue(m.key)
	return s
}

// elements iterates the elements of a valid JSON array.
type elements struct {
	data []byte
	pos  int
	val  []byte
}

func newElements(arr []byte) elements {
	return elements{data: arr, pos: 1}
}

func (e *elements) next() bool {
	i := skipSpace(e.data, e.pos)
	if i >= len(e.data) || e.data[i] == ']' {
		return false
	}
	if e.data[i] == ',' {
		i = skipSpace(e.data, i+1)
	}
	end := skipValue(e.data, i)
	e.val = e.data[i:end]
	e.pos = end
	return true
}

// stringValue returns the Go string of a raw JSON value, and false when the
// value is not a JSON string (null included).
func stringValue(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false // unreachable for valid input
	}
	return s, true
}

// hasLoneSurrogate reports whether a raw JSON string has a \uD800-\uDFFF escape that is not
// half of a surrogate pair. encoding/json would turn it into U+FFFD, which would publish
// something the device did not send.
func hasLoneSurrogate(raw []byte) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return false // no escape at all: the common case, found fast
	}
	for i := 0; i+5 < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // skip the escaped character, which may itself be a backslash
			continue
		}
		r := hex4(raw[i+2 : i+6])
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if i+11 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
				if low := hex4(raw[i+8 : i+12]); low >= 0xDC00 && low <= 0xDFFF {
					i += 11
					continue
				}
			}
			return true
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		}
		i += 5
	}
	return false
}

// hex4 reads four hex digits (validJSON has checked them).
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// integerValue reads a JSON number that must be an integer literal (no
// fraction, no exponent: "443.0" and "1e3" are numbers a device should not
// send as a port). Magnitudes beyond int range are clamped, which is enough
// for a range check to reject them.
func integerValue(raw []byte) (v int, ok bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	neg := raw[0] == '-'
	digits := raw
	if neg {
		digits = raw[1:]
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	const maxDigits = 18 // always fits in int64 without overflow
	if len(digits) > maxDigits {
		if neg {
			return math.MinInt, true
		}
		return math.MaxInt, true
	}
	for _, c := range digits {
		v = v*10 + int(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// pathKey renders a key for use inside a problem path. Ordinary keys appear
// as they are; keys that would make the path ambiguous or unreadable (empty,
// containing '.', '[', ']', '"', spaces or non-printable runes) are quoted,
// so a reason_poisoned attribute stays printable and unambiguous.
func pathKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, r := range k {
		if r == '.' || r == '[' || r == ']' || r == '"' || r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r) {
			return strconv.Quote(k)
		}
	}
	return k
}
