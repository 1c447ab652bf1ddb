package main

import (
	"context"
	"io"
)

// runPreview implements `linkwall preview`. (placeholder; issue #2)
func runPreview(ctx context.Context, args []string, stdout, stderr io.Writer) int { return 1 }

// runPolicy implements `linkwall policy check FILE`. (placeholder; issue #2)
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int { return 1 }
