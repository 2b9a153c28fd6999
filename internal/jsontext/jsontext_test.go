package jsontext

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzAppendString holds the hand-written string encoders to
// encoding/json's output, byte for byte.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "<a href=\"x\">&amp;</a>", "\x00\x1f\x7f\b\f\n\r\t\\", "é€𝄞\u2028\u2029", "\xff\xfe bad utf-8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(AppendString(nil, s)))
		assert.Equal(t, string(want), string(AppendStringBytes(nil, []byte(s))))
		assert.Equal(t, "x"+string(want), string(AppendStringBytes([]byte("x"), []byte(s))))
	})
}
