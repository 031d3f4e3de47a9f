package origin

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Target is one origin server of a group. Its zero value is not valid:
// URL is required.
type Target struct {
	// URL is the base URL, http or https, without query or credentials.
	// A request for uri goes to URL's prefix + uri
	// ("https://o.example/app" + "/a?b" = "https://o.example/app/a?b").
	URL string `yaml:"url" json:"url"`
	// Host is the Host header sent. "" sends the URL's host.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// ClientHost forwards the client's Host (req.Host as given to Do)
	// instead of Host; health checks then send the URL's host.
	ClientHost bool `yaml:"client_host,omitempty" json:"client_host,omitempty"`
	// SNI is the TLS server name, sent and verified. "" is Host (without
	// its port), or the URL's host when Host is "" or ClientHost is set:
	// one connection pool cannot follow every client's Host.
	SNI string `yaml:"sni,omitempty" json:"sni,omitempty"`
	// Backup targets are tried only when every primary is unavailable or
	// failed for this request.
	Backup bool `yaml:"backup,omitempty" json:"backup,omitempty"`
	// Name labels the target in metrics and logs. "" is the URL's
	// host[:port]. Give one to targets that share a URL host.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
}

// HealthCheck configures active health checks: a GET of Path every
// Interval. The zero value checks nothing.
type HealthCheck struct {
	// Path is requested under the target's URL prefix, with its Host.
	// "" disables active checks.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Interval between checks. Default 10s.
	Interval time.Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Timeout bounds one check, at most Interval. Default 2s (or Interval
	// if shorter).
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// FailAfter consecutive failed checks mark the target down. Default 3.
	FailAfter int `yaml:"fail_after,omitempty" json:"fail_after,omitempty"`
	// RecoverAfter consecutive good checks (2xx or 3xx) mark it up again.
	// Default 2.
	RecoverAfter int `yaml:"recover_after,omitempty" json:"recover_after,omitempty"`
}

// Breaker configures each target's circuit breaker (passive health). The
// zero value takes the defaults.
type Breaker struct {
	// Failures is the number of consecutive failures (no answer, a
	// timeout, or a 5xx failover status) that open it. Default 5.
	Failures int `yaml:"failures,omitempty" json:"failures,omitempty"`
	// Cooldown is how long it stays open before one probe request may
	// go (half-open). Default 10s.
	Cooldown time.Duration `yaml:"cooldown,omitempty" json:"cooldown,omitempty"`
}

// GroupConfig is one site's origins. Zero fields take their defaults;
// Targets needs at least one primary.
type GroupConfig struct {
	// Site labels the group's metrics.
	Site string `yaml:"-" json:"-"`
	// Targets in order of preference; primaries before backups whatever
	// their order here.
	Targets []Target `yaml:"targets" json:"targets"`
	// FailoverStatuses are the statuses, 400-599, that send the request
	// on to the next origin. Default 502, 503, 504. The 5xx among them
	// count as failures for the breaker; a 4xx only says the origin lacks
	// the object.
	FailoverStatuses []int       `yaml:"failover_statuses,omitempty" json:"failover_statuses,omitempty"`
	Health           HealthCheck `yaml:"health,omitempty" json:"health,omitzero"`
	Breaker          Breaker     `yaml:"breaker,omitempty" json:"breaker,omitzero"`
}

// WithDefaults returns gc with zero fields set to their defaults.
func (gc GroupConfig) WithDefaults() GroupConfig {
	if gc.FailoverStatuses == nil {
		gc.FailoverStatuses = []int{502, 503, 504}
	}
	h := &gc.Health
	if h.Path != "" {
		if h.Interval == 0 {
			h.Interval = 10 * time.Second
		}
		if h.Timeout == 0 {
			h.Timeout = min(2*time.Second, h.Interval)
		}
		if h.FailAfter == 0 {
			h.FailAfter = 3
		}
		if h.RecoverAfter == 0 {
			h.RecoverAfter = 2
		}
	}
	if gc.Breaker.Failures == 0 {
		gc.Breaker.Failures = 5
	}
	if gc.Breaker.Cooldown == 0 {
		gc.Breaker.Cooldown = 10 * time.Second
	}
	return gc
}

// Validate reports every bad field at once, named as in YAML.
func (gc GroupConfig) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(gc.Targets) == 0 {
		bad("targets: at least one origin is required")
	} else if !slices.ContainsFunc(gc.Targets, func(t Target) bool { return !t.Backup }) {
		bad("targets: at least one must be a primary (backup: false)")
	}
	for i, t := range gc.Targets {
		if err := t.validate(); err != nil {
			bad("targets[%d].%w", i, err)
		}
		if j := slices.IndexFunc(gc.Targets[:i], func(o Target) bool { return o.URL == t.URL && o.Host == t.Host && o.SNI == t.SNI }); j >= 0 {
			bad("targets[%d]: the same origin as targets[%d]", i, j)
		}
	}
	for i, s := range gc.FailoverStatuses {
		if s < 400 || s > 599 {
			bad("failover_statuses[%d]: must be 400-599, got %d", i, s)
		}
	}
	h := gc.Health
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		bad("health.path: must start with /, got %q", h.Path)
	}
	if h.Interval < 0 || h.Timeout < 0 || h.FailAfter < 0 || h.RecoverAfter < 0 {
		bad("health: interval, timeout, fail_after and recover_after must be >= 0")
	}
	if h.Interval > 0 && h.Timeout > h.Interval {
		bad("health.timeout: must be <= health.interval (%s), got %s", h.Interval, h.Timeout)
	}
	if gc.Breaker.Failures < 0 {
		bad("breaker.failures: must be >= 0, got %d", gc.Breaker.Failures)
	}
	if gc.Breaker.Cooldown < 0 {
		bad("breaker.cooldown: must be >= 0, got %s", gc.Breaker.Cooldown)
	}
	return errors.Join(errs...)
}

func (t Target) validate() error {
	u, err := url.Parse(t.URL)
	switch {
	case t.URL == "":
		return errors.New("url: required")
	case err != nil:
		return fmt.Errorf("url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("url: scheme must be http or https, got %q", t.URL)
	case u.Host == "":
		return fmt.Errorf("url: no host in %q", t.URL)
	case u.User != nil:
		return errors.New("url: credentials are not allowed (they would reach logs)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("url: no query or fragment allowed, got %q", t.URL)
	case t.ClientHost && t.Host != "":
		return errors.New("host: set either host or client_host, not both")
	case !validName(t.Host):
		return fmt.Errorf("host: not a host name, got %q", t.Host)
	case !validName(t.SNI) || strings.Contains(t.SNI, ":"):
		return fmt.Errorf("sni: not a host name, got %q", t.SNI)
	}
	return nil
}

// validName reports whether s could be a host[:port]: no spaces, controls
// or characters that would end a header or a URL authority.
func validName(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune("/?#@\\,;\"'<>", r)
	})
}
