package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/selfcdn/cdn/internal/apiclient"
)

// runStatus prints a summary of the network from control's API.
func runStatus(ctx context.Context, args []string, stderr io.Writer) error {
	return status(ctx, args, os.Stdout, stderr)
}

func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("control-url", "", "control API base URL, several comma-separated (default $CDN_CONTROL_URL)")
	token := fs.String("token", "", "API token with read scope (default $CDN_TOKEN)")
	if err := parse(fs, args); err != nil {
		return err
	}
	// Read after parsing, so -h never prints the token.
	*url, *token = cmp.Or(*url, os.Getenv("CDN_CONTROL_URL")), cmp.Or(*token, os.Getenv("CDN_TOKEN"))
	if *url == "" || *token == "" {
		return usageError{errors.New("set CDN_CONTROL_URL and CDN_TOKEN (or --control-url and --token)")}
	}
	var edges struct {
		Edges []struct {
			Name, Region, HTTP, Health, Reason, Version string
			Draining                                    bool
			Seen                                        time.Time
		} `json:"edges"`
	}
	var sites struct {
		Sites []struct {
			Name  string
			Hosts []string
		} `json:"sites"`
	}
	base := strings.TrimSuffix(*url, "/")
	client := &apiclient.Client{BaseURL: *url, Token: *token}
	if err := getJSON(ctx, client, "/v1/edges", &edges); err != nil {
		return err
	}
	if err := getJSON(ctx, client, "/v1/sites", &sites); err != nil {
		return err
	}
	count := map[string]int{}
	for _, e := range edges.Edges {
		count[e.Health]++
		if e.Draining {
			count["draining"]++
		}
	}
	fmt.Fprintf(stdout, "control %s: %d edges (%d up, %d down, %d unknown, %d draining), %d sites\n\n",
		base, len(edges.Edges), count["up"], count["down"], count["unknown"], count["draining"], len(sites.Sites))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tEDGE\tHEALTH\tDRAINING\tLAST SEEN\tVERSION\tHTTP\tREASON")
	for _, e := range edges.Edges {
		drain := "no"
		if e.Draining {
			drain = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s ago\t%s\t%s\t%s\n", e.Region, e.Name, e.Health, drain,
			time.Since(e.Seen).Round(time.Second), e.Version, e.HTTP, e.Reason)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tHOSTS")
	for _, s := range sites.Sites {
		fmt.Fprintf(tw, "%s\t%s\n", s.Name, strings.Join(s.Hosts, ", "))
	}
	return tw.Flush()
}

// getJSON reads one of control's lists into v, retried as every control
// API client retries a GET; each attempt is bounded to 10 seconds.
func getJSON(ctx context.Context, c *apiclient.Client, path string, v any) error {
	err := c.Do(ctx, apiclient.Request{Method: http.MethodGet, Path: path, AttemptTimeout: 10 * time.Second}, v)
	switch {
	case errors.Is(err, apiclient.ErrBadBaseURL):
		return usageError{err}
	case err != nil:
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}
