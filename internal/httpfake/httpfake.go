// Package httpfake has HTTP clients for tests of what the AWS SDK's service clients hand to
// their HTTP client.
package httpfake

import (
	"io"
	"net/http"
	"strings"
)

// BodyKeeper is an HTTP client (an SDK client's Options.HTTPClient) that reads a request's body
// as net/http does (ContentLength bytes, no more), answers 200 with Response as an AWS JSON 1.1
// body, and keeps the request's body so that a test can read it again after the call, as
// net/http's write loop may.
type BodyKeeper struct {
	Response string
	Body     io.ReadCloser
}

// Do implements the SDK's HTTP client interface.
func (k *BodyKeeper) Do(req *http.Request) (*http.Response, error) {
	if _, err := io.Copy(io.Discard, io.LimitReader(req.Body, req.ContentLength)); err != nil {
		return nil, err
	}
	k.Body = req.Body
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
		Body:       io.NopCloser(strings.NewReader(k.Response)),
		Request:    req,
	}, nil
}
