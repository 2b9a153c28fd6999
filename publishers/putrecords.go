package publishers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"sync"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	asmbase64 "github.com/segmentio/asm/base64"

	"github.com/event-processor/event-processor/internal/jsontext"
)

// FastPutRecords is a kinesis.Options function that makes the client serialize PutRecords
// requests with PutRecordsProtocol. Use it for the client given to the Kinesis publisher.
func FastPutRecords(o *kinesis.Options) {
	o.Protocol = PutRecordsProtocol{ClientProtocol: o.Protocol}
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Finalize.Add(hashPutRecordsBody, middleware.Before)
	})
}

// hashPutRecordsBody gives SigV4 the payload hash of a PutRecords body, computed from its bytes.
// The SDK's own middleware would io.Copy the body into the hash, and since the body has no
// WriteTo (putRecordsBody), that takes a 32 KiB buffer per request.
var hashPutRecordsBody = middleware.FinalizeMiddlewareFunc("HashPutRecordsBody", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	if req, ok := in.Request.(*smithyhttp.Request); ok {
		if body, ok := req.GetStream().(*putRecordsBody); ok {
			sum := sha256.Sum256(body.data)
			ctx = v4.SetPayloadHash(ctx, hex.EncodeToString(sum[:]))
		}
	}
	return next.HandleFinalize(ctx, in)
})

// PutRecordsProtocol is the Kinesis client's protocol (AWS JSON 1.1) with its own serializer for
// PutRecords: one buffer of the right size, base64 written straight into it. The SDK's generic
// serializer allocates each record's base64 separately and grows its buffer by doubling; in a
// profile of the processor that was a quarter of all bytes allocated and 6% of its CPU. Every
// other operation, and a PutRecords input using fields the publisher does not set (DryRun,
// StreamARN, StreamId), goes to the SDK's serializer.
type PutRecordsProtocol struct {
	smithyhttp.ClientProtocol
}

// SerializeRequest implements smithyhttp.ClientProtocol.
func (p PutRecordsProtocol) SerializeRequest(ctx context.Context, schema *smithy.OperationSchema, in smithy.Serializable, req *smithyhttp.Request) error {
	put, ok := in.(*kinesis.PutRecordsInput)
	if !ok || put.DryRun != nil || put.StreamARN != nil || put.StreamId != nil {
		return p.ClientProtocol.SerializeRequest(ctx, schema, in, req)
	}
	// What the AWS JSON protocol sets for every request.
	req.Method = http.MethodPost
	if len(req.URL.Path) == 0 {
		req.URL.Path = "/"
	}
	req.Header.Set("X-Amz-Target", "Kinesis_20131202.PutRecords")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")

	size := putRecordsSize(put)
	var body []byte
	if buf, ok := ctx.Value(bodyBufferKey{}).(*bodyBuffer); ok {
		if cap(buf.b) < size {
			buf.b = make([]byte, 0, size)
		}
		buf.b = appendPutRecords(buf.b[:0], put)
		body = buf.b
	} else {
		body = appendPutRecords(make([]byte, 0, size), put)
	}
	stream := &putRecordsBody{data: body}
	stream.r.Reset(body)
	sreq, err := req.SetStream(stream)
	if err != nil {
		return fmt.Errorf("set stream: %w", err)
	}
	*req = *sreq
	return nil
}

// putRecordsBody is the PutRecords body as smithy-go gets it: a bytes.Reader without its WriteTo.
// smithy-go closes a request body as soon as the response has arrived, and wraps a body that has
// WriteTo in a closer whose WriteTo then returns io.EOF as an error. net/http's write loop may
// make its last read of the body (to check its length) only after that; through WriteTo that
// read fails, the transport closes the connection, and the response being read is lost: a
// PutRecords Kinesis carried out looks failed and its records are written twice (1 of 600 runs
// of a test under -race). Through Read, a read after the close is a clean io.EOF.
type putRecordsBody struct {
	data []byte
	r    bytes.Reader
}

func (b *putRecordsBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *putRecordsBody) Seek(offset int64, whence int) (int64, error) {
	return b.r.Seek(offset, whence)
}

// bodyBuffer is a PutRecords body that is written again for the next request once its call has
// returned. The bodies are the largest allocations of the processor (tens of KiB per request,
// zeroed, a tenth of the bytes it allocated in a profile of just bench).
//
// Reusing one is safe once PutRecords has returned: smithy-go's client handler closes the
// request body as soon as the HTTP round trip returns, and the body it hands to net/http is a
// safe closer that reads nothing more after that, even from a transport still holding it.
type bodyBuffer struct{ b []byte }

type bodyBufferKey struct{}

var bodyBuffers = sync.Pool{New: func() any { return new(bodyBuffer) }}

// withBodyBuffer returns a context under which PutRecordsProtocol writes the PutRecords body into
// a pooled buffer, and the function that gives the buffer back: call it after PutRecords has
// returned, never before.
func withBodyBuffer(ctx context.Context) (context.Context, func()) {
	buf := bodyBuffers.Get().(*bodyBuffer)
	return context.WithValue(ctx, bodyBufferKey{}, buf), func() { bodyBuffers.Put(buf) }
}

// putRecordsSize is at least the body's size when no string needs escaping (stream names and
// partition keys rarely do; append grows the buffer if one does).
func putRecordsSize(in *kinesis.PutRecordsInput) int {
	n := len(`{"Records":[],"StreamName":""}`)
	if in.StreamName != nil {
		n += len(*in.StreamName)
	}
	for _, r := range in.Records {
		n += len(`{"Data":"","ExplicitHashKey":"","PartitionKey":""},`) + stdBase64.EncodedLen(len(r.Data))
		if r.PartitionKey != nil {
			n += len(*r.PartitionKey)
		}
		if r.ExplicitHashKey != nil {
			n += len(*r.ExplicitHashKey)
		}
	}
	return n
}

// stdBase64 is encoding/base64's StdEncoding with AVX2 (amd64) or NEON (arm64) where the CPU has
// it: the same output, two to three times as fast on records of a few hundred bytes. Encoding the
// records' data was 3% of the processor's CPU in just bench with encoding/base64.
var stdBase64 = asmbase64.StdEncoding

// appendBase64 appends the standard base64 of src to dst.
func appendBase64(dst, src []byte) []byte {
	n, m := len(dst), stdBase64.EncodedLen(len(src))
	dst = slices.Grow(dst, m)[:n+m]
	stdBase64.Encode(dst[n:], src)
	return dst
}

// appendPutRecords appends the JSON body of a PutRecords request, with the members the SDK
// writes for the same input (nil members are left out).
func appendPutRecords(dst []byte, in *kinesis.PutRecordsInput) []byte {
	dst = append(dst, '{')
	if in.Records != nil {
		dst = append(dst, `"Records":[`...)
		for i, r := range in.Records {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '{')
			sep := false
			member := func(name string) {
				if sep {
					dst = append(dst, ',')
				}
				dst = append(dst, name...)
				sep = true
			}
			if r.Data != nil {
				member(`"Data":"`)
				dst = appendBase64(dst, r.Data)
				dst = append(dst, '"')
			}
			if r.ExplicitHashKey != nil {
				member(`"ExplicitHashKey":`)
				dst = jsontext.AppendString(dst, *r.ExplicitHashKey)
			}
			if r.PartitionKey != nil {
				member(`"PartitionKey":`)
				dst = jsontext.AppendString(dst, *r.PartitionKey)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if in.StreamName != nil {
		if in.Records != nil {
			dst = append(dst, ',')
		}
		dst = append(dst, `"StreamName":`...)
		dst = jsontext.AppendString(dst, *in.StreamName)
	}
	return append(dst, '}')
}
