package publishers_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/publishers"
)

// answer is an HTTP client that answers every request with one status and body.
type answer struct {
	status int
	body   string
}

func (a answer) Do(*http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: a.status,
		Header:     http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
		// Like a network body: no WriteTo for io.Copy to use.
		Body:          io.NopCloser(struct{ io.Reader }{strings.NewReader(a.body)}),
		ContentLength: int64(len(a.body)),
	}, nil
}

// decoded is what a client makes of a PutRecords answer, with the SDK's deserializer or with
// FastPutRecords.
func decoded(t testing.TB, status int, body string, fast bool) (*kinesis.PutRecordsOutput, error) {
	t.Helper()
	opts := []func(*kinesis.Options){}
	if fast {
		opts = append(opts, publishers.FastPutRecords)
	}
	client := kinesis.New(kinesis.Options{
		Region:      "us-east-1",
		Credentials: aws.AnonymousCredentials{},
		Retryer:     aws.NopRetryer{},
		HTTPClient:  answer{status: status, body: body},
	}, opts...)
	return client.PutRecords(t.Context(), &kinesis.PutRecordsInput{
		StreamName: aws.String("events"),
		Records:    []types.PutRecordsRequestEntry{{Data: []byte("x"), PartitionKey: aws.String("k")}},
	})
}

// sameAsSDK requires FastPutRecords to read body as the SDK does: the same result, or an error
// where the SDK has one. It may refuse more than the SDK, never less, and only for the two
// reasons named here: a refused result is retried (duplicates at worst), a misread one could
// lose records. It returns the result.
func sameAsSDK(t *testing.T, status int, body string) *kinesis.PutRecordsOutput {
	t.Helper()
	want, wantErr := decoded(t, status, body, false)
	got, gotErr := decoded(t, status, body, true)
	if wantErr != nil {
		require.Error(t, gotErr, "the SDK refuses %q (%v); FastPutRecords read %+v", body, wantErr, got)
		return nil
	}
	if gotErr != nil && (strings.Contains(gotErr.Error(), "after the object") || strings.Contains(gotErr.Error(), "nested values")) {
		return nil // the SDK ignores what follows the result, and nests without bound
	}
	require.NoError(t, gotErr, "%q", body)
	assert.Equal(t, want.FailedRecordCount, got.FailedRecordCount, "%q", body)
	assert.Equal(t, want.EncryptionType, got.EncryptionType, "%q", body)
	assert.Equal(t, want.Records, got.Records, "%q", body)
	return got
}

var putRecordsAnswers = []struct {
	name   string
	status int
	body   string
}{
	{"all written", 200, `{"FailedRecordCount":0,"Records":[{"SequenceNumber":"49590338271490256608559692538361571095921575989136588898","ShardId":"shardId-000000000000"},{"SequenceNumber":"2","ShardId":"shardId-000000000001"}],"EncryptionType":"NONE"}`},
	{"some failed", 200, `{"FailedRecordCount":1,"Records":[{"SequenceNumber":"1","ShardId":"shardId-000000000000"},{"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard shardId-000000000001 in stream events under account 000000000000."}]}`},
	{"whitespace and member order", 200, " {\n \"Records\" : [ { \"ShardId\" : \"s\" , \"SequenceNumber\" : \"1\" } ] ,\t\"FailedRecordCount\" : 0 }\r\n"},
	{"escapes", 200, `{"Records":[{"ErrorCode":"Internal\u0046ailure","ErrorMessage":"a \"quoted\"\\ \/ \u00e9 \ud83d\ude00 message"}],"FailedRecordCount":1}`},
	{"escaped member name", 200, `{"Rec\u006frds":[{"Sequence\u004eumber":"1"}]}`},
	{"nulls", 200, `{"FailedRecordCount":null,"EncryptionType":null,"Records":[null,{"SequenceNumber":null,"ShardId":"s","ErrorCode":null}]}`},
	{"records null", 200, `{"Records":null}`},
	{"no records", 200, `{"FailedRecordCount":0,"Records":[]}`},
	{"empty object", 200, `{}`},
	{"empty body", 200, ``},
	{"unknown members", 200, `{"X":{"a":[1,2.5e-3,true,false,null,"s",{}]},"Records":[{"SequenceNumber":"1","Extra":[[]],"ShardId":"s"}],"Y":-0.0}`},
	{"repeated member: the last counts", 200, `{"Records":[{"SequenceNumber":"1","SequenceNumber":"2"}],"FailedRecordCount":3,"FailedRecordCount":0}`},
	{"truncated", 200, `{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1"`},
	{"trailing garbage", 200, `{"Records":[]} x`},
	{"two objects", 200, `{"Records":[]}{}`},
	{"not an object", 200, `[]`},
	{"records not an array", 200, `{"Records":{}}`},
	{"sequence number not a string", 200, `{"Records":[{"SequenceNumber":1}]}`},
	{"record not an object", 200, `{"Records":["x"]}`},
	{"count not an integer", 200, `{"FailedRecordCount":"1","Records":[]}`},
	{"count a fraction", 200, `{"FailedRecordCount":1.5,"Records":[]}`},
	{"count too large", 200, `{"FailedRecordCount":4294967296,"Records":[]}`},
	{"bad escape", 200, `{"Records":[{"ErrorCode":"\x"}]}`},
	{"control character in a string", 200, "{\"Records\":[{\"ErrorCode\":\"a\nb\"}]}"},
	{"missing comma", 200, `{"Records":[{"SequenceNumber":"1" "ShardId":"s"}]}`},
	{"trailing comma", 200, `{"Records":[{"SequenceNumber":"1"},]}`},
	{"bad literal", 200, `{"X":nul,"Records":[]}`},
	{"bad number", 200, `{"X":01,"Records":[]}`},
	{"deep unknown member", 200, `{"X":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `,"Records":[]}`},
	{"throttled call", 400, `{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded"}`},
	{"server error", 500, `{"__type":"InternalFailure"}`},
}

func TestFastPutRecordsReadsResultsAsTheSDKDoes(t *testing.T) {
	for _, c := range putRecordsAnswers {
		t.Run(c.name, func(t *testing.T) {
			sameAsSDK(t, c.status, c.body)
		})
	}
}

func TestFastPutRecordsResult(t *testing.T) {
	out := sameAsSDK(t, 200, putRecordsAnswers[1].body)
	require.Len(t, out.Records, 2)
	assert.Equal(t, "1", aws.ToString(out.Records[0].SequenceNumber))
	assert.Nil(t, out.Records[0].ErrorCode)
	assert.Nil(t, out.Records[1].SequenceNumber)
	assert.Equal(t, "ProvisionedThroughputExceededException", aws.ToString(out.Records[1].ErrorCode))
	assert.Equal(t, int32(1), aws.ToInt32(out.FailedRecordCount))
}

func FuzzFastPutRecordsResult(f *testing.F) {
	for _, c := range putRecordsAnswers {
		if c.status == 200 {
			f.Add(c.body)
		}
	}
	f.Fuzz(func(t *testing.T, body string) {
		sameAsSDK(t, 200, body)
	})
}

// BenchmarkPutRecordsResult reads a 70-record result (the bench's average request) through a
// whole client call, with the SDK's deserializer and with FastPutRecords.
func BenchmarkPutRecordsResult(b *testing.B) {
	var body strings.Builder
	body.WriteString(`{"FailedRecordCount":0,"Records":[`)
	for i := range 70 {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"SequenceNumber":"49590338271490256608559692538361571095921575989136588898","ShardId":"shardId-000000000001"}`)
	}
	body.WriteString(`],"EncryptionType":"NONE"}`)
	for _, fast := range []bool{false, true} {
		name := "sdk"
		if fast {
			name = "fast"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if out, err := decoded(b, 200, body.String(), fast); err != nil || len(out.Records) != 70 {
					b.Fatal(err)
				}
			}
		})
	}
}
