// Package jsontext appends JSON text exactly as encoding/json writes it, without reflection or
// allocation: for the records the processor builds and the requests it sends.
package jsontext

import "unicode/utf8"

// jsonHTMLSafe marks the ASCII bytes encoding/json writes unescaped when
// HTML escaping is on (its default); mirroring it keeps our records
// byte-identical to what json.Marshal would produce.
var jsonHTMLSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// The exported functions stay out of line on purpose. Inlined into another
// package, their call to the generic appendString is taken by escape
// analysis (Go 1.26) as letting dst escape, which moves callers' stack
// buffers to the heap; called from here, it is analysed precisely.

// AppendString appends s as a JSON string literal exactly as json.Marshal encodes it.
//
//go:noinline
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }

// AppendStringBytes is AppendString for text held in a byte slice, which
// would otherwise need a string made of it first (an allocation).
//
//go:noinline
func AppendStringBytes(dst []byte, s []byte) []byte { return appendString(dst, s) }

func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonHTMLSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		// At most utf8.UTFMax bytes: short enough for the conversion of a
		// []byte to stay on the stack.
		c, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
