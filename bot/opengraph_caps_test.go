package bot

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestOpenGraphTimeAndHeaderCaps: a site that trickles its page forever is
// cut off by the fetcher's own time cap (the caller sets no deadline), and
// one with oversized headers is refused; both give no card.
func TestOpenGraphTimeAndHeaderCaps(t *testing.T) {
	t.Run("trickling body", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html><head>")
			for {
				if _, err := fmt.Fprint(w, " "); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}))
		defer srv.Close()
		start := time.Now()
		card, err := testFetcher(nil).Fetch(context.Background(), srv.URL+"/p")
		took := time.Since(start)
		if err == nil || took < ogTimeout-100*time.Millisecond || took > ogTimeout+2*time.Second {
			t.Fatalf("Fetch = %+v, %v after %v; want an error after about %v", card, err, took, ogTimeout)
		}
	})
	t.Run("oversized headers", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("X-Padding", strings.Repeat("p", ogMaxHeader+1))
			fmt.Fprint(w, ogPage)
		}))
		defer srv.Close()
		if card, err := testFetcher(nil).Fetch(context.Background(), srv.URL+"/p"); err == nil {
			t.Fatalf("headers over %d bytes accepted: %+v", ogMaxHeader, card)
		}
	})
}
