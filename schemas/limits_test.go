package schemas

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Limits (issue 4): what unbounded input costs today. Run with
//
//	go test ./schemas -run '^$' -bench Limits -benchmem -benchtime 10x
//
// The figures (time, bytes and allocations per body, events kept, problems
// and reason size) are the basis for the proposed limits; nothing is
// enforced here.

// limitsBody fills a plain-JSON body of about size bytes with copies of
// entry in the new_process list.
func limitsBody(entry string, size int) (string, int) {
	head := withEvents(`{"new_process":[`)
	head = head[:len(head)-1] // withEvents closes the envelope
	n := (size - len(head) - 3) / (len(entry) + 1)
	var b strings.Builder
	b.Grow(size)
	b.WriteString(head)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(entry)
	}
	b.WriteString("]}}")
	return b.String(), n
}

func benchLimits(b *testing.B, body string) {
	b.Helper()
	raw := []byte(body)
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	var events, problems, reason, recBytes int
	for b.Loop() {
		s, err := Parse(raw)
		if err != nil {
			ie := err.(*InvalidError)
			problems, reason = len(ie.Problems), len(ie.Error())
			continue
		}
		recs := s.Records(now, PartitionByDevice)
		events, problems, reason = len(recs), len(s.Dropped), len(JoinProblems(s.Dropped))
		recBytes = 0
		for _, r := range recs {
			recBytes += len(r.Data)
		}
	}
	b.ReportMetric(float64(len(raw)), "body-bytes")
	b.ReportMetric(float64(events), "events")
	b.ReportMetric(float64(recBytes), "record-bytes")
	b.ReportMetric(float64(problems), "problems")
	b.ReportMetric(float64(reason), "reason-bytes")
}

func BenchmarkLimits(b *testing.B) {
	const mib = 1 << 20
	valid, _ := limitsBody(`{"cmdl":"a","user":"b"}`, mib)
	notObjects, _ := limitsBody(`0`, mib)
	empties, _ := limitsBody(`{}`, mib)
	nullCmdl, _ := limitsBody(`{"cmdl":null,"user":"b"}`, mib)
	unknown := withEvents(`{"x":[` + strings.Repeat("0,", mib/2-2) + `0]}`)
	deep10k := `{"x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `,` + withEvents(`{}`)[1:]
	deepOver := `{"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `,` + withEvents(`{}`)[1:]
	deepB64 := b64(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))
	for _, c := range []struct{ name, body string }{
		{"1MiB valid events", valid},
		{"1MiB valid events base64", b64(valid)},
		{"1MiB of non-object entries", notObjects},
		{"1MiB of empty objects", empties},
		{"1MiB of null cmdl", nullCmdl},
		{"1MiB unknown event type", unknown},
		{"nesting 10,000 in unknown field", deep10k},
		{"nesting 10,001 rejected", deepOver},
		{"nesting 10,000 brackets base64", deepB64},
	} {
		b.Run(c.name, func(b *testing.B) { benchLimits(b, c.body) })
	}
}

func TestLimitsBodiesParse(t *testing.T) {
	// The benchmark bodies must be what they claim: the 1 MiB of valid events
	// holds over 40,000 events, which MaxEvents rejects before validating any.
	body, n := limitsBody(`{"cmdl":"a","user":"b"}`, 1<<20)
	if n < 40000 || len(body) > 1<<20 {
		t.Fatalf("n=%d len=%d", n, len(body))
	}
	err := mustFail(t, body)
	if want := fmt.Sprintf("events: more than %d events (%d)", MaxEvents, n); err.Error() != want {
		t.Fatalf("got %q, want %q", err.Error(), want)
	}
	_, n = limitsBody(`0`, 1<<20)
	if n < 100000 {
		t.Fatalf("non-object entries: %d", n)
	}
}
