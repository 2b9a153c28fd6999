package subscribers

import "github.com/ThreeDotsLabs/watermill"

// messageLogger adds a message's fields to the lines logged about it. LoggerAdapter.With would
// build a logger up front for every message, and Watermill's slog adapter formats the fields right
// then; here they are merged only when a line is written, which for a message is rare.
type messageLogger struct {
	base   watermill.LoggerAdapter
	fields watermill.LogFields
}

var _ watermill.LoggerAdapter = messageLogger{}

func (l messageLogger) Error(msg string, err error, fields watermill.LogFields) {
	l.base.Error(msg, err, l.fields.Add(fields))
}

func (l messageLogger) Info(msg string, fields watermill.LogFields) {
	l.base.Info(msg, l.fields.Add(fields))
}

func (l messageLogger) Debug(msg string, fields watermill.LogFields) {
	l.base.Debug(msg, l.fields.Add(fields))
}

func (l messageLogger) Trace(msg string, fields watermill.LogFields) {
	l.base.Trace(msg, l.fields.Add(fields))
}

func (l messageLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return messageLogger{base: l.base, fields: l.fields.Add(fields)}
}
