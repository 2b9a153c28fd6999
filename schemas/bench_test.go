package schemas

import (
	"testing"
	"time"
)

// BenchmarkParseAndRecords is the per-message work of the processor on the
// real message of original-assignment.md (7 events).
func BenchmarkParseAndRecords(b *testing.B) {
	body := []byte(b64(realMessage))
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		s, err := Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		if recs := s.Records(now, PartitionByDevice); len(recs) != 7 {
			b.Fatal(len(recs))
		}
	}
}

func BenchmarkParse(b *testing.B) {
	body := []byte(b64(realMessage))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecords(b *testing.B) {
	s, err := Parse([]byte(b64(realMessage)))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s.Records(now, PartitionByDevice)
	}
}

func BenchmarkParsePartlyInvalid(b *testing.B) {
	body := []byte(b64(withEvents(`{"new_process":[{"cmdl":null,"user":"a"},{"cmdl":"b","user":"c"}],"network_connection":[{"source_ip":"192.168.0.1","destination_ip":"not-an-ip","destination_port":1}]}`)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}
