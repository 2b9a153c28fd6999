package subscribers

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
)

func TestMessageLoggerAddsItsFieldsToEveryLine(t *testing.T) {
	captured := watermill.NewCaptureLogger()
	l := messageLogger{base: captured, uuid: "m1"}
	l.Info("info", watermill.LogFields{"a": 1})
	boom := errors.New("boom")
	l.Error("error", boom, nil)
	l.With(watermill.LogFields{"b": 2}).Debug("debug", nil)

	assert.True(t, captured.Has(watermill.CapturedMessage{Level: watermill.InfoLogLevel, Fields: watermill.LogFields{"message_uuid": "m1", "a": 1}, Msg: "info"}))
	assert.True(t, captured.Has(watermill.CapturedMessage{Level: watermill.ErrorLogLevel, Fields: watermill.LogFields{"message_uuid": "m1"}, Msg: "error", Err: boom}))
	assert.True(t, captured.Has(watermill.CapturedMessage{Level: watermill.DebugLogLevel, Fields: watermill.LogFields{"message_uuid": "m1", "b": 2}, Msg: "debug"}))
}
