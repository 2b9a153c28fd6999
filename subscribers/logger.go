package subscribers

import "github.com/ThreeDotsLabs/watermill"

// messageLogger adds a message's uuid (and the fields of With) to the lines logged about it.
// LoggerAdapter.With would build a logger up front for every message, and Watermill's slog
// adapter formats the fields right then; here even the field map is made only when a line is
// written, which for a message is rare.
type messageLogger struct {
	base   watermill.LoggerAdapter
	uuid   string
	fields watermill.LogFields // of With; nil without
}

var _ watermill.LoggerAdapter = messageLogger{}

func (l messageLogger) all(fields watermill.LogFields) watermill.LogFields {
	return watermill.LogFields{"message_uuid": l.uuid}.Add(l.fields).Add(fields)
}

func (l messageLogger) Error(msg string, err error, fields watermill.LogFields) {
	l.base.Error(msg, err, l.all(fields))
}

func (l messageLogger) Info(msg string, fields watermill.LogFields) {
	l.base.Info(msg, l.all(fields))
}

func (l messageLogger) Debug(msg string, fields watermill.LogFields) {
	l.base.Debug(msg, l.all(fields))
}

func (l messageLogger) Trace(msg string, fields watermill.LogFields) {
	l.base.Trace(msg, l.all(fields))
}

func (l messageLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return messageLogger{base: l.base, uuid: l.uuid, fields: l.fields.Add(fields)}
}
