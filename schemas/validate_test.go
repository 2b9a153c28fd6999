package schemas

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var checkStrings = []string{"", " ", "a", subID, strings.ToUpper(devID), "81140a44b06d421dbd00cbc65aab6503", tcVal,
	"2021-03-28T15:44:18+02:00", "2021-02-30T00:00:00", "192.168.0.1", "::1", "fe80::1%eth0", "10.0.0.0/8", "01.2.3.4",
	"0.0.0.0", "255.255.255.255", "256.0.0.1", "1.2.3", "1.2.3.4.5", "1..2.3", "1.2.3.4.", ".1.2.3", "1.2.3.04", "1.2.3.0004", "::ffff:1.2.3.4",
	"\x00", "é"}

// FuzzIPLiteralText holds the bytes shortcut to netip's verdict.
func FuzzIPLiteralText(f *testing.F) {
	for _, s := range checkStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		require.Equal(t, isIPLiteral(s), isIPLiteralText([]byte(s)), "%q", s)
	})
}

func TestValidatorTagsOnBytes(t *testing.T) {
	cases := []struct {
		name string
		in   any
		want fieldReasons
	}{
		{"non-empty text passes", &newProcess{cmdl: []byte("a"), user: []byte("b")}, fieldReasons{}},
		{"empty but non-nil text is empty", &newProcess{cmdl: []byte{}, user: nil}, fieldReasons{reasonEmpty, reasonEmpty}},
		{"IP addresses as bytes", &networkConnection{sourceIP: []byte("10.0.0.1"), destinationIP: []byte("::1"), destinationPort: 443}, fieldReasons{}},
		{"not IP addresses, port out of range", &networkConnection{sourceIP: []byte("01.2.3.4"), destinationIP: []byte("fe80::1%eth0"), destinationPort: 65536}, fieldReasons{reasonNotIP, reasonNotIP, reasonPortRange}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r fieldReasons
			names := newProcessNames
			if _, ok := c.in.(*networkConnection); ok {
				names = networkConnNames
			}
			check(c.in, names, &r)
			assert.Equal(t, c.want, r)
		})
	}
}

func TestDottedQuadIsIPLiteral(t *testing.T) {
	for _, s := range checkStrings {
		if isDottedQuad([]byte(s)) {
			assert.True(t, isIPLiteral(s), s)
		}
	}
	for _, s := range []string{"0.0.0.0", "1.2.3.4", "255.255.255.255", "10.0.0.1", "192.168.100.200"} {
		assert.True(t, isDottedQuad([]byte(s)), s)
	}
	for _, s := range []string{"", "1.2.3", "256.1.1.1", "1.2.3.04", "00.1.2.3", "1.2.3.4.", "1.2.3.4/8", "::1", "1.2.3.-4", "1.2.3.4 "} {
		assert.False(t, isDottedQuad([]byte(s)), s)
	}
}

func TestIsCanonicalUUID(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{subID, true},
		{"81140A44-B06D-421D-BD00-CBC65AAB6503", true},
		{"81140a44-B06D-421d-bd00-CBC65aab6503", true},
		{"00000000-0000-0000-0000-000000000000", true},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", true},
		{"", false},
		{"not-an-uuid", false},
		{"81140a44b06d421dbd00cbc65aab6503", false},
		{"81140a44-b06d-421d-bd00-cbc65aab650", false},
		{"81140a44-b06d-421d-bd00-cbc65aab65030", false},
		{"81140a44_b06d_421d_bd00_cbc65aab6503", false},
		{"81140a44-b06d-421d-bd00-cbc65aab650g", false},
		{" 81140a44-b06d-421d-bd00-cbc65aab650", false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, isCanonicalUUID(tc.in), tc.in)
	}
}

func TestIsISO8601DateTime(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"2021-03-28T15:44:18.592840", true},
		{"2021-03-28T15:44:18", true},
		{"2021-03-28T15:44:18Z", true},
		{"2021-03-28T15:44:18.592840Z", true},
		{"2021-03-28T15:44:18+02:00", true},
		{"2021-03-28T15:44:18.1-12:00", true},
		{"2021-03-28T15:44:18.123456789+23:59", true},
		{"2000-02-29T00:00:00", true},
		{"0000-01-01T00:00:00", true},
		{"2021-12-31T23:59:59", true},
		{"1900-02-29T00:00:00", false},
		{"2021-04-31T00:00:00", false},
		{"2021-00-10T00:00:00", false},
		{"2021-01-00T00:00:00", false},
		{"2021-13-40T15:44:18", false},
		{"2021-03-28 15:44:18", false},
		{"2021-03-28t15:44:18", false},
		{"2021-03-28", false},
		{"2021-03-28T15:44", false},
		{"2021-03-28T15:60:00", false},
		{"2021-03-28T15:44:60", false},
		{"2021-03-28T15:44:18.", false},
		{"2021-03-28T15:44:18,5", false},
		{"2021-03-28T15:44:18z", false},
		{"2021-03-28T15:44:18+24:00", false},
		{"2021-03-28T15:44:18+02:60", false},
		{"2021-03-28T15:44:18+02", false},
		{"2021-03-28T15:44:18Z+02:00", false},
		{"20210328T154418", false},
		{"+2021-03-28T15:44:18", false},
		{"2021-3-28T15:44:18", false},
		{"", false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, isISO8601DateTime(tc.in), tc.in)
	}
}

func TestIsIPLiteral(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"192.168.0.1", true},
		{"0.0.0.0", true},
		{"255.255.255.255", true},
		{"::", true},
		{"::1", true},
		{"2001:db8::8a2e:370:7334", true},
		{"::ffff:10.0.0.1", true},
		{"256.0.0.1", false},
		{"1.2.3", false},
		{"01.2.3.4", false},
		{"10.0.0.0/8", false},
		{"fe80::1%eth0", false},
		{"[::1]", false},
		{"example.com", false},
		{" 10.0.0.1", false},
		{"", false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, isIPLiteral(tc.in), tc.in)
	}
}

func TestReasonForUnknownTag(t *testing.T) {
	assert.Equal(t, "not a UUID", reasonFor("uuid_canonical"))
	assert.Equal(t, "failed gte", reasonFor("gte"))
}

func TestIntegerValue(t *testing.T) {
	cases := []struct {
		in     string
		want   int
		wantOK bool
	}{
		{"0", 0, true},
		{"-0", 0, true},
		{"443", 443, true},
		{"-1", -1, true},
		{"999999999999999999", 999999999999999999, true},
		{"9999999999999999999", math.MaxInt, true},
		{"-9999999999999999999", math.MinInt, true},
		{"1.0", 0, false},
		{"1e3", 0, false},
		{"1E3", 0, false},
		{`"1"`, 0, false},
		{"null", 0, false},
		{"true", 0, false},
		{"", 0, false},
	}
	for _, tc := range cases {
		v, ok := integerValue([]byte(tc.in))
		assert.Equal(t, tc.wantOK, ok, tc.in)
		assert.Equal(t, tc.want, v, tc.in)
	}
}

func TestPathKey(t *testing.T) {
	assert.Equal(t, "file_open", pathKey("file_open"))
	assert.Equal(t, "fichier_ouvert_é", pathKey("fichier_ouvert_é"))
	assert.Equal(t, `"a.b"`, pathKey("a.b"))
	assert.Equal(t, `"a[0]"`, pathKey("a[0]"))
	assert.Equal(t, `"a b"`, pathKey("a b"))
	assert.Equal(t, `"\n"`, pathKey("\n"))
	assert.Equal(t, `"\u2028"`, pathKey("\u2028"))
	assert.Equal(t, `""`, pathKey(""))
}
