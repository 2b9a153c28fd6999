package main

import (
	"context"
	"io"
)

// runTail is being written (issue #3).
func runTail(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return usagef("tail: not available yet")
}
