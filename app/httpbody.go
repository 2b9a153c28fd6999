package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// requestWriteBuffer is the size of the write buffer of the AWS clients' connections: a request
// whose headers and body fit is sent with one write.
const requestWriteBuffer = 64 << 10

// httpDoer is the HTTP client interface of the SDK's service clients (their Options.HTTPClient).
type httpDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// oneWriteClient sends a request's headers and body in one write. net/http flushes the headers
// of a request on their own unless the body is one of the in-memory readers it knows, and the
// SDK's body is not (it wraps the bytes it serialized): a header write, then the body through a
// 32 KiB buffer allocated per request, in as many writes. Read into a bytes.Reader, the body
// joins the headers in the connection's write buffer. A larger body is passed on with its
// WriteTo hidden (readOnlyBody), so that a call carried out is never taken for a failed one.
type oneWriteClient struct {
	next httpDoer
}

// withOneWriteRequests wraps the SDK's default HTTP client (as the service client option
// functions receive it) so that its requests go out in one write; other clients are left alone.
func withOneWriteRequests(client httpDoer) httpDoer {
	buildable, ok := client.(*awshttp.BuildableClient)
	if !ok {
		return client
	}
	return oneWriteClient{next: buildable.WithTransportOptions(func(t *http.Transport) { t.WriteBufferSize = requestWriteBuffer })}
}

// oneWriteSQSRequests is an SQS client option: withOneWriteRequests on its HTTP client. Every
// client that sends messages uses it, for readOnlyBody's sake as much as for the single write.
func oneWriteSQSRequests(o *sqs.Options) {
	o.HTTPClient = withOneWriteRequests(o.HTTPClient)
}

func (c oneWriteClient) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength <= 0 {
		return c.next.Do(req)
	}
	if req.ContentLength > requestWriteBuffer {
		if _, ok := req.Body.(io.WriterTo); !ok {
			return c.next.Do(req)
		}
		// smithy-go closes the body when the response arrives, and its closed body's WriteTo
		// returns io.EOF as an error; net/http's last read of a sent body can come after that
		// (see publishers.putRecordsBody), and then loses the response. Read alone ends cleanly.
		sent := *req
		sent.Body = readOnlyBody{req.Body}
		return c.next.Do(&sent)
	}
	body := make([]byte, req.ContentLength)
	_, err := io.ReadFull(req.Body, body)
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	sent := *req
	sent.Body = io.NopCloser(bytes.NewReader(body))
	return c.next.Do(&sent)
}

// readOnlyBody hides a request body's WriteTo from net/http.
type readOnlyBody struct{ io.ReadCloser }
