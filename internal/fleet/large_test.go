package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/schemas"
)

func TestLargeIsValidAndAgreesWithTheProcessor(t *testing.T) {
	g := New(1, 3)
	a, b := g.Large(2000), g.Large(2000)
	assert.NotEqual(t, a.SubmissionID, b.SubmissionID)
	assert.Equal(t, g.DeviceIDs()[1], b.DeviceID, "devices in Next's turn")

	require.True(t, a.Valid)
	require.Len(t, a.ValidEvents(), 2000)
	parsed, err := schemas.Parse([]byte(a.Body))
	require.NoError(t, err)
	require.Len(t, parsed.Events, 2000)
	assert.Empty(t, parsed.Dropped)
	recs := parsed.Records(time.Now(), schemas.PartitionByDevice)
	assert.Contains(t, string(recs[1999].Data), `"cmdl":"`+a.ValidEvents()[1999].Data["cmdl"].(string)+`"`)
	assert.Less(t, len(g.Large(9000).Body), 1<<20, "9,000 events fit in one SQS message")
}
