package main

import (
	"context"
	"io"
)

// runServe implements `linkwall serve`. (placeholder; issue #3)
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int { return 1 }
