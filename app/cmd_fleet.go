package main

import (
	"context"
	"io"
)

// runFleet is being written (issue #3).
func runFleet(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return usagef("fleet: not available yet")
}
