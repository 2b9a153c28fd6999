package schemas

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var validJSONCases = []string{
	"", " ", "{}", "[]", " {} ", "{", "}", "[", "]", "{]", "[}", "{}}", "[]]", "{} {}", "{},", "[,]", "[1,]", "[1,,2]",
	`{"a":1}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":}`, `{,"a":1}`, `{"a":1 "b":2}`, `{"a":[1,{"b":null}],"c":{}}`,
	`{"a":1,"a":2}`, `{"":""}`, `{"\u00e9":"\ud800"}`,
	"0", "-0", "01", "-01", "1.", "1.5", ".5", "-", "--1", "+1", "1e", "1e+", "1e-5", "1E+05", "1.5e3", "1.e3", "0x1", "1 2",
	"Infinity", "NaN", "-1.0e-0",
	"true", "false", "null", "tru", "nul", "truex", "True", "nulll", "[true,false,null]",
	`""`, `"a`, `"\"`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\a"`, `"\u12"`, `"\u12g4"`, `"\uABCD"`, `"\u00"`, "\"\x00\"", "\"\x1f\"", "\"\x7f\"",
	"\"\xff\xfe\"", "\"\t\"", "\t\n\r {}\r\n\t", "\v{}", "\f{}", "{}\v", "\xef\xbb\xbf{}", "[\"a\" , \"b\" ]", "{ \"a\" : 1 , \"b\" : [ ] }",
	realMessage,
	strings.Repeat("[", maxNesting) + strings.Repeat("]", maxNesting),
	strings.Repeat("[", maxNesting+1) + strings.Repeat("]", maxNesting+1),
	strings.Repeat(`{"a":`, maxNesting) + "1" + strings.Repeat("}", maxNesting),
	strings.Repeat(`{"a":`, maxNesting+1) + "1" + strings.Repeat("}", maxNesting+1),
	strings.Repeat(`[{"a":`, maxNesting/2) + "1" + strings.Repeat("}]", maxNesting/2),
	strings.Repeat("[", maxNesting+1),
	strings.Repeat("[", 70) + strings.Repeat("]", 69) + "}",
	strings.Repeat(`{"a":[`, 40) + strings.Repeat("]}", 40),
	strings.Repeat(`{"a":[`, 40) + strings.Repeat("}]", 40),
}

func TestValidJSON(t *testing.T) {
	for _, c := range validJSONCases {
		require.Equal(t, json.Valid([]byte(c)), validJSON([]byte(c)), "%.80q", c)
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range validJSONCases {
		f.Add([]byte(c))
	}
	for _, tc := range catalogue {
		if len(tc.body) <= maxSeed {
			f.Add([]byte(tc.body))
			if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(tc.body)); err == nil {
				f.Add(dec)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		require.Equal(t, json.Valid(data), validJSON(data), "%q", data)
	})
}
