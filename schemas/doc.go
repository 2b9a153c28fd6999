// Package schemas turns an SQS message body into Kinesis records (spec 1.1-1.3).
//
// Decode: Parse undoes the base64, checks UTF-8 and JSON once, then walks the document with a
// small scanner (scan.go) that keeps key order and sees duplicate keys. Validate: JSON shape in
// parse.go, values through validator tags (validate.go); a bad envelope is an *InvalidError, a bad
// event goes to Submission.Dropped. Split: Submission.Records (record.go), one record per valid event.
package schemas
