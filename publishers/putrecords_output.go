package publishers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// DeserializeResponse implements smithyhttp.ClientProtocol. A successful PutRecords response is
// read by decodePutRecordsOutput; errors and every other operation go to the SDK's deserializer.
// The SDK's generic one reads member by member through a schema, with four allocations per
// record result: 5% of the processor's CPU in a profile of just bench.
func (p PutRecordsProtocol) DeserializeResponse(ctx context.Context, schema *smithy.OperationSchema, registry *smithy.TypeRegistry, resp *smithyhttp.Response, out smithy.Deserializable) error {
	put, ok := out.(*kinesis.PutRecordsOutput)
	if !ok || resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return p.ClientProtocol.DeserializeResponse(ctx, schema, registry, resp, out)
	}
	body, err := readBody(resp)
	if err != nil {
		return &smithy.DeserializationError{Err: err}
	}
	if len(body) == 0 {
		return nil
	}
	if err := decodePutRecordsOutput(string(body), put); err != nil {
		return &smithy.DeserializationError{Err: err}
	}
	return nil
}

// readBody reads a response body of the announced length in one go: io.Copy would take a
// 32 KiB buffer for every response, the body of an HTTP response offering no WriteTo.
func readBody(resp *smithyhttp.Response) ([]byte, error) {
	if resp.ContentLength <= 0 || resp.ContentLength > MaxBytesPerRequest {
		return io.ReadAll(resp.Body)
	}
	body := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(resp.Body, body); err != nil {
		return nil, err
	}
	return body, nil
}

// decodePutRecordsOutput reads the JSON of a PutRecords result into out, as the SDK would: the
// members it knows, nulls left as nil, unknown members skipped, the last of repeated members
// kept. Its strings are slices of text (one copy of the body for the whole result) unless they
// hold escapes.
func decodePutRecordsOutput(text string, out *kinesis.PutRecordsOutput) error {
	r := jsonReader{s: text}
	// The objects in the text bound the records: two strings each, in one allocation.
	objects := strings.Count(text, "{")
	strs := make([]string, 0, 2*objects)
	str := func(dst **string) error {
		s, null, err := r.stringOrNull()
		if err != nil || null {
			return err
		}
		if len(strs) == cap(strs) {
			// Not &s: taking its address would move s to the heap on every call, not only here.
			p := new(string)
			*p = s
			*dst = p
			return nil
		}
		strs = append(strs, s)
		*dst = &strs[len(strs)-1]
		return nil
	}
	err := r.object(func(key string) error {
		switch key {
		case "FailedRecordCount":
			n, null, err := r.int32OrNull()
			if err == nil && !null {
				out.FailedRecordCount = &n
			}
			return err
		case "EncryptionType":
			s, _, err := r.stringOrNull()
			out.EncryptionType = types.EncryptionType(s)
			return err
		case "Records":
			if r.null() {
				return nil
			}
			out.Records = make([]types.PutRecordsResultEntry, 0, objects-1)
			return r.array(func() error {
				var e types.PutRecordsResultEntry
				if !r.null() {
					err := r.object(func(key string) error {
						switch key {
						case "SequenceNumber":
							return str(&e.SequenceNumber)
						case "ShardId":
							return str(&e.ShardId)
						case "ErrorCode":
							return str(&e.ErrorCode)
						case "ErrorMessage":
							return str(&e.ErrorMessage)
						}
						return r.skip()
					})
					if err != nil {
						return err
					}
				}
				out.Records = append(out.Records, e)
				return nil
			})
		}
		return r.skip()
	})
	if err != nil {
		return err
	}
	r.space()
	if r.i != len(r.s) {
		return fmt.Errorf("PutRecords result: unexpected %q after the object", r.rest())
	}
	return nil
}

// jsonReader reads JSON text strictly, by hand: object members, array elements, strings, numbers
// and literals, and skips any value. Errors name where it stopped.
type jsonReader struct {
	s     string
	i     int
	depth int // of the containers being read
}

// maxJSONDepth bounds the nesting of values that skip reads recursively: a PutRecords result
// nests three deep.
const maxJSONDepth = 64

var errJSONEnd = errors.New("PutRecords result: unexpected end of JSON")

func (r *jsonReader) space() {
	for r.i < len(r.s) {
		switch r.s[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *jsonReader) rest() string {
	return r.s[r.i:min(r.i+20, len(r.s))]
}

func (r *jsonReader) unexpected(what string) error {
	if r.i >= len(r.s) {
		return errJSONEnd
	}
	return fmt.Errorf("PutRecords result: want %s at %q", what, r.rest())
}

// null consumes a null literal if one comes next.
func (r *jsonReader) null() bool {
	r.space()
	if strings.HasPrefix(r.s[r.i:], "null") {
		r.i += len("null")
		return true
	}
	return false
}

// object reads an object, calling member with the reader at each member's value, which member
// must consume.
func (r *jsonReader) object(member func(key string) error) error {
	return r.container('{', '}', "an object", func() error {
		key, err := r.string()
		if err != nil {
			return err
		}
		r.space()
		if r.i >= len(r.s) || r.s[r.i] != ':' {
			return r.unexpected("':'")
		}
		r.i++
		return member(key)
	})
}

// array reads an array, calling element with the reader at each element, which element must
// consume.
func (r *jsonReader) array(element func() error) error {
	return r.container('[', ']', "an array", element)
}

// container reads what opens with open and closes with end, calling item for each of its
// comma-separated items.
func (r *jsonReader) container(open, end byte, what string, item func() error) error {
	r.space()
	if r.i >= len(r.s) || r.s[r.i] != open {
		return r.unexpected(what)
	}
	r.i++
	r.space()
	if r.i < len(r.s) && r.s[r.i] == end {
		r.i++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		r.space()
		if r.i >= len(r.s) {
			return errJSONEnd
		}
		switch r.s[r.i] {
		case ',':
			r.i++
		case end:
			r.i++
			return nil
		default:
			return r.unexpected(fmt.Sprintf("',' or '%c'", end))
		}
	}
}

// string reads a string. One without escapes is a slice of the text; one with escapes is
// decoded by encoding/json, which also rejects bad escapes.
func (r *jsonReader) string() (string, error) {
	r.space()
	if r.i >= len(r.s) || r.s[r.i] != '"' {
		return "", r.unexpected("a string")
	}
	start := r.i
	escaped := false
	for j := start + 1; j < len(r.s); j++ {
		switch c := r.s[j]; {
		case c == '"':
			r.i = j + 1
			if !escaped {
				return r.s[start+1 : j], nil
			}
			var s string
			if err := json.Unmarshal([]byte(r.s[start:r.i]), &s); err != nil {
				return "", fmt.Errorf("PutRecords result: string %q: %w", r.s[start:r.i], err)
			}
			return s, nil
		case c == '\\':
			escaped = true
			j++ // the escaped character, which may be a quote
		case c < 0x20:
			r.i = j
			return "", r.unexpected("no control character in a string")
		}
	}
	return "", errJSONEnd
}

func (r *jsonReader) stringOrNull() (s string, null bool, err error) {
	if r.null() {
		return "", true, nil
	}
	s, err = r.string()
	return s, false, err
}

func (r *jsonReader) int32OrNull() (n int32, null bool, err error) {
	if r.null() {
		return 0, true, nil
	}
	tok, err := r.number()
	if err != nil {
		return 0, false, err
	}
	v, err := strconv.ParseInt(tok, 10, 32)
	if err != nil {
		return 0, false, fmt.Errorf("PutRecords result: FailedRecordCount %s: %w", tok, err)
	}
	return int32(v), false, nil
}

// number reads a number token as JSON defines it.
func (r *jsonReader) number() (string, error) {
	r.space()
	start := r.i
	digits := func() int {
		n := 0
		for r.i < len(r.s) && r.s[r.i] >= '0' && r.s[r.i] <= '9' {
			r.i++
			n++
		}
		return n
	}
	if r.i < len(r.s) && r.s[r.i] == '-' {
		r.i++
	}
	switch {
	case r.i < len(r.s) && r.s[r.i] == '0':
		r.i++
	case digits() == 0:
		r.i = start
		return "", r.unexpected("a number")
	}
	if r.i < len(r.s) && r.s[r.i] == '.' {
		r.i++
		if digits() == 0 {
			return "", r.unexpected("a digit")
		}
	}
	if r.i < len(r.s) && (r.s[r.i] == 'e' || r.s[r.i] == 'E') {
		r.i++
		if r.i < len(r.s) && (r.s[r.i] == '+' || r.s[r.i] == '-') {
			r.i++
		}
		if digits() == 0 {
			return "", r.unexpected("a digit")
		}
	}
	return r.s[start:r.i], nil
}

// skip reads any value and drops it.
func (r *jsonReader) skip() error {
	r.space()
	if r.i >= len(r.s) {
		return errJSONEnd
	}
	switch c := r.s[r.i]; {
	case c == '{' || c == '[':
		if r.depth == maxJSONDepth {
			return r.unexpected(fmt.Sprintf("no more than %d nested values", maxJSONDepth))
		}
		r.depth++
		defer func() { r.depth-- }()
		if c == '[' {
			return r.array(r.skip)
		}
		return r.object(func(string) error { return r.skip() })
	case c == '"':
		_, err := r.string()
		return err
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(r.s[r.i:], lit) {
				r.i += len(lit)
				return nil
			}
		}
		return r.unexpected("a value")
	default:
		_, err := r.number()
		return err
	}
}
