package main

import (
	"context"
	"io"
)

// runDLQ is being written (issue #3).
func runDLQ(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return usagef("dlq: not available yet")
}
