package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/httpfake"
)

// writeCountingConn counts the writes made on a connection.
type writeCountingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c writeCountingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// opaqueBody hides the reader's type, as the SDK's request bodies do.
type opaqueBody struct{ io.Reader }

func (opaqueBody) Close() error { return nil }

func TestOneWriteClient(t *testing.T) {
	var received atomic.Value
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received.Store(string(body))
	}))
	defer server.Close()

	tests := []struct {
		name       string
		body       string
		oneWrite   bool
		wantWrites int64 // 0: more than one
	}{
		{"a small body goes with its headers", strings.Repeat("s", 300), true, 1},
		{"so does a 60 KiB one", strings.Repeat("k", 60<<10), true, 1},
		{"without the wrapper, headers and body are written apart", strings.Repeat("s", 300), false, 2},
		{"a body larger than the buffer goes as before", strings.Repeat("l", 100<<10), true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var writes atomic.Int64
			var client httpDoer = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
				tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
					conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
					return writeCountingConn{Conn: conn, writes: &writes}, err
				}
			})
			if tt.oneWrite {
				client = withOneWriteRequests(client)
			}
			req, err := http.NewRequest(http.MethodPost, server.URL, opaqueBody{bytes.NewReader([]byte(tt.body))})
			require.NoError(t, err)
			req.ContentLength = int64(len(tt.body))
			resp, err := client.Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			assert.Equal(t, tt.body, received.Load(), "the body arrives whole")
			if tt.wantWrites > 0 {
				assert.Equal(t, tt.wantWrites, writes.Load())
			} else {
				assert.Greater(t, writes.Load(), int64(1))
			}
		})
	}
}

func TestOneWriteClientLeavesOtherClientsAlone(t *testing.T) {
	custom := &http.Client{}
	assert.Same(t, custom, withOneWriteRequests(custom))
}

func TestOneWriteClientLargeBodyCanBeReadAfterTheCall(t *testing.T) {
	// net/http reads a sent body once more (to check its length), possibly after smithy-go has
	// closed it; an error there loses the response and the call is retried although it was
	// carried out. Bodies above the buffer are passed on, so they must survive that read too.
	in := &kinesis.PutRecordsInput{StreamName: aws.String("events"), Records: []kinesistypes.PutRecordsRequestEntry{{Data: bytes.Repeat([]byte("l"), 100<<10), PartitionKey: aws.String("k")}}}
	for _, oneWrite := range []bool{true, false} {
		k := &httpfake.BodyKeeper{Response: `{"FailedRecordCount":0,"Records":[]}`}
		var client httpDoer = k
		if oneWrite {
			client = oneWriteClient{next: k}
		}
		kc := kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), Credentials: aws.AnonymousCredentials{}, Retryer: aws.NopRetryer{}, HTTPClient: client})
		_, err := kc.PutRecords(t.Context(), in)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, k.Body)
		if oneWrite {
			assert.NoError(t, err)
		} else {
			assert.ErrorIs(t, err, io.EOF, "smithy-go's closed body; if this passes, smithy-go fixed it and readOnlyBody can go")
		}
	}
}
