package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
)

func TestWatermillLoggerWritesWhatItsLevelAllows(t *testing.T) {
	tests := []struct {
		name  string
		level slog.Level
		want  []string
	}{
		{"info", slog.LevelInfo, []string{"info line", "error line"}},
		{"debug", slog.LevelDebug, []string{"debug line", "info line", "error line"}},
		{"trace", watermill.LevelTrace, []string{"trace line", "debug line", "info line", "error line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			logger := newWatermillLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: tt.level})))
			logger = logger.With(watermill.LogFields{"handler": "submissions"})
			logger.Trace("trace line", watermill.LogFields{"message_uuid": "m-1"})
			logger.Debug("debug line", nil)
			logger.Info("info line", nil)
			logger.Error("error line", nil, nil)
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				assert.Contains(t, line, "handler=submissions", "fields given to With are kept")
				_, msg, _ := strings.Cut(line, `msg="`)
				msg, _, _ = strings.Cut(msg, `"`)
				got = append(got, msg)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}
