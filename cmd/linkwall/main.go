// Command linkwall is a WebSocket chat server whose link bot renders every
// posted link as blocked, a bare hyperlink or a rich card, following the
// rules WeChat applied to rival platforms in 2021.
//
//	linkwall serve   [flags]           run the chat server and the browser demo
//	linkwall preview [flags] TEXT...   show how the links in TEXT would render
//	linkwall policy check FILE         validate a policy file
//	linkwall healthcheck [URL]         probe a server (for container health checks)
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usage = `usage:
  linkwall serve   [--addr HOST:PORT] [--data DIR] [--era ID|DATE] [--policy FILE] [--redis URL]
  linkwall preview [--chat direct|group] [--era ID|DATE] [--policy FILE] [--json] TEXT...
  linkwall policy check FILE
  linkwall healthcheck [URL]        exit 0 if URL (default http://127.0.0.1:8080/readyz) answers 200
run 'linkwall COMMAND -h' for a command's flags
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the process exit status:
// 0 on success, 1 on failure, 2 on bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "preview":
		return runPreview(ctx, args[1:], stdout, stderr)
	case "policy":
		return runPolicy(ctx, args[1:], stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, args[1:], stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "linkwall: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

// healthcheckTimeout bounds a probe so a hung server fails its health check.
const healthcheckTimeout = 3 * time.Second

// runHealthcheck probes a server's readiness: the distroless image has no
// curl, so container health checks call the binary itself.
func runHealthcheck(ctx context.Context, args []string, stderr io.Writer) int {
	url := "http://127.0.0.1:8080/readyz"
	if len(args) > 0 {
		url = args[0]
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "linkwall healthcheck: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "linkwall healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "linkwall healthcheck: %s answered %s\n", url, resp.Status)
		return 1
	}
	return 0
}
