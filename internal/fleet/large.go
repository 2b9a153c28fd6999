package fleet

import (
	"fmt"
	"strings"
)

// Large builds a valid submission of the next device (in Next's turn) with n new_process events
// and no network_connection events: what a device with that much to report would send. Its body
// is plain JSON (spec 1.1 allows it), since base64 adds a third and SQS takes at most 1 MiB:
// 9,000 events make about 810 KB. For tests of memory and throughput with large messages; the
// original fleet never sends one.
func (g *Generator) Large(n int) Submission {
	g.mu.Lock()
	device := g.devices[g.next]
	g.next = (g.next + 1) % len(g.devices)
	sid := uuid4(g.rng)
	created := pyISOFormat(g.now())
	user := users[g.rng.IntN(len(users))]
	g.mu.Unlock()

	var b strings.Builder
	fmt.Fprintf(&b, `{"submission_id": "%s", "device_id": "%s", "time_created": "%s", "events": {"new_process": [`, sid, device, created)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"cmdl": "%s --file report-%06d.txt", "user": "%s"}`, cmdls[i%len(cmdls)], i, user)
	}
	b.WriteString(`], "network_connection": []}}`)
	s := Submission{Name: fmt.Sprintf("large (%d events)", n), Body: b.String(), JSON: []byte(b.String()), Valid: true}
	fillFromJSON(&s, nil)
	return s
}
