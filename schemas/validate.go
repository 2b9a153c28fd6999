package schemas

import (
	"errors"
	"net/netip"
	"reflect"

	"github.com/go-playground/validator/v10"
)

// The validator checks values; JSON shape (types, presence versus null,
// duplicates, order) is checked by the scanner code in parse.go, because
// tags cannot see it: once a document is unmarshalled into a struct, a
// missing field, a null and "" all look the same. So the structs below are
// filled only with fields that are present and of the right JSON type, and
// validator errors for the other fields are ignored (they already have a
// better reason).
//
// The fields are unexported and the validator is built with
// WithPrivateFieldValidation: for an exported field, the validator boxes the
// value in an interface to look for a Valuer, an allocation per field and
// event (16% of the objects the processor allocated in just bench). It reads
// unexported fields without that. The name tags give the JSON names that
// errors report.

type envelope struct {
	submissionID string `name:"submission_id" validate:"uuid_canonical"`
	deviceID     string `name:"device_id" validate:"uuid_canonical"`
	timeCreated  string `name:"time_created" validate:"iso8601_datetime"`
}

// The event fields hold the decoded text as bytes: a slice of the document
// when the JSON string has no escapes, the common case, so checking and
// re-encoding an event makes no string of it. Hence nonempty rather than
// required, which passes any non-nil slice.

type newProcess struct {
	cmdl []byte `name:"cmdl" validate:"nonempty"`
	user []byte `name:"user" validate:"nonempty"`
}

type networkConnection struct {
	sourceIP        []byte `name:"source_ip" validate:"ip_literal"`
	destinationIP   []byte `name:"destination_ip" validate:"ip_literal"`
	destinationPort int    `name:"destination_port" validate:"port"`
}

// Reasons users see in reason_poisoned when a value fails its tag.
const (
	reasonEmpty      = "empty"
	reasonNotUUID    = "not a UUID"
	reasonNotISO8601 = "not an ISO 8601 date-time"
	reasonNotIP      = "not an IP address"
	reasonPortRange  = "out of range 0..65535"
)

// reasons maps a failed tag to its reason.
var reasons = map[string]string{
	"nonempty":         reasonEmpty,
	"uuid_canonical":   reasonNotUUID,
	"iso8601_datetime": reasonNotISO8601,
	"ip_literal":       reasonNotIP,
	"port":             reasonPortRange,
}

func reasonFor(tag string) string {
	if r, ok := reasons[tag]; ok {
		return r
	}
	return "failed " + tag
}

// validate is built once: validator caches struct metadata per type and is
// safe for concurrent use.
var validate = newValidator()

func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled(), validator.WithPrivateFieldValidation())
	// Field() of an error is then the JSON name, so paths are JSON paths.
	v.RegisterTagNameFunc(func(f reflect.StructField) string { return f.Tag.Get("name") })
	rules := map[string]validator.Func{
		"uuid_canonical":   func(fl validator.FieldLevel) bool { return isCanonicalUUID(fl.Field().String()) },
		"iso8601_datetime": func(fl validator.FieldLevel) bool { return isISO8601DateTime(fl.Field().String()) },
		"ip_literal":       func(fl validator.FieldLevel) bool { return isIPLiteralText(fl.Field().Bytes()) },
		"nonempty":         func(fl validator.FieldLevel) bool { return fl.Field().Len() > 0 },
		"port": func(fl validator.FieldLevel) bool {
			p := fl.Field().Int()
			return p >= 0 && p <= 65535
		},
	}
	for tag, fn := range rules {
		if err := v.RegisterValidation(tag, fn); err != nil {
			panic(err)
		}
	}
	return v
}

// fieldReasons holds at most one reason per field of a struct, indexed like
// the field names passed around with it; "" means no problem.
type fieldReasons [3]string

// check runs the validator on s and fills in reasons for the fields that do
// not have one yet (those that passed the JSON type checks).
func check(s any, names []string, r *fieldReasons) {
	err := validate.Struct(s)
	if err == nil {
		return
	}
	var ves validator.ValidationErrors
	if !errors.As(err, &ves) {
		panic(err) // a programming error: s is not a pointer to a struct
	}
	for _, fe := range ves {
		for i, n := range names {
			if n == fe.Field() && r[i] == "" {
				r[i] = reasonFor(fe.Tag())
			}
		}
	}
}

// isCanonicalUUID accepts the 8-4-4-4-12 hex form, any version or variant,
// either case. uuid.Parse is laxer (braces, urn: prefix, no dashes), which a
// partition key and an id we echo back must not be.
func isCanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// isISO8601DateTime accepts the extended calendar form
// YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|±HH:MM]: what Python's isoformat() writes
// (the fraction is absent when microseconds are 0, the offset when the time
// is naive) and what RFC 3339 writers produce. Calendar dates are checked for
// real (no 2021-02-30); a leap second :60 is rejected, as Go's time package
// cannot represent it either.
func isISO8601DateTime(s string) bool {
	if len(s) < 19 {
		return false
	}
	if !digitsAt(s, 0, 4) || s[4] != '-' || !digitsAt(s, 5, 2) || s[7] != '-' || !digitsAt(s, 8, 2) ||
		s[10] != 'T' || !digitsAt(s, 11, 2) || s[13] != ':' || !digitsAt(s, 14, 2) || s[16] != ':' || !digitsAt(s, 17, 2) {
		return false
	}
	year, month, day := num(s[0:4]), num(s[5:7]), num(s[8:10])
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return false
	}
	if num(s[11:13]) > 23 || num(s[14:16]) > 59 || num(s[17:19]) > 59 {
		return false
	}
	rest := s[19:]
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 { // 1..9 fraction digits
			return false
		}
		rest = rest[n:]
	}
	switch {
	case rest == "", rest == "Z":
		return true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && digitsAt(rest, 1, 2) && rest[3] == ':' && digitsAt(rest, 4, 2):
		return num(rest[1:3]) <= 23 && num(rest[4:6]) <= 59
	}
	return false
}

func digitsAt(s string, at, n int) bool {
	for i := at; i < at+n; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func num(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// isIPLiteral accepts IPv4 (dotted quad, no leading zeros) and IPv6
// literals, without a zone: a zone is only meaningful on the device that
// sent it.
func isIPLiteral(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// isIPLiteralText is isIPLiteral for text in bytes. The usual IPv4 address is
// recognised without making a string for netip; anything else goes to netip,
// which decides. TestDottedQuadIsIPLiteral and FuzzIPLiteralText hold every quad
// accepted here to be one netip accepts too.
func isIPLiteralText(b []byte) bool {
	return isDottedQuad(b) || isIPLiteral(string(b))
}

// isDottedQuad accepts four decimal fields 0..255 without leading zeros,
// separated by dots: exactly netip's IPv4 form.
func isDottedQuad(b []byte) bool {
	fields, n, digits := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || n > 255 {
				return false
			}
			fields++
			n, digits = 0, 0
			continue
		}
		c := b[i]
		if c < '0' || c > '9' || (digits == 1 && n == 0) || digits == 3 {
			return false // not a digit, a leading zero, or more than 3 digits
		}
		n = n*10 + int(c-'0')
		digits++
	}
	return fields == 4
}
