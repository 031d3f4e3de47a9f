package regions

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// api calls control's API in region r from inside r (an operator on the
// control host), with the admin token, and decodes a JSON answer into
// out when given. It returns the status and the raw body.
func (c *cluster) api(r region, method, path string, body any, out any) (int, string, error) {
	return c.apiKey(r, method, path, "", body, out)
}

// apiKey is api with an Idempotency-Key (none when key is empty).
func (c *cluster) apiKey(r region, method, path, key string, body any, out any) (int, string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, controlURL(r)+path, rd)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := httpIn(c.w.nsName(r, "dc"), 10*time.Second).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, "", err
	}
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, string(b), fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return res.StatusCode, string(b), nil
}

// purge purges path on site through control in r and returns the
// purge's version.
func (c *cluster) purge(r region, site string, paths ...string) (uint64, error) {
	return c.purgeKey(r, site, "", paths...)
}

// purgeRetry is purge as a CI job does it (cdn purge): with an
// idempotency key, retried while control answers 5xx or cannot be
// reached, up to limit. It returns the version and how long it took.
func (c *cluster) purgeRetry(r region, site, key string, limit time.Duration, paths ...string) (uint64, time.Duration, error) {
	start := time.Now()
	for {
		v, err := c.purgeKey(r, site, key, paths...)
		if err == nil || time.Since(start) > limit {
			return v, time.Since(start), err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (c *cluster) purgeKey(r region, site, key string, paths ...string) (uint64, error) {
	var out struct {
		Version uint64 `json:"version"`
	}
	code, body, err := c.apiKey(r, http.MethodPost, "/v1/sites/"+site+"/purge", key, map[string]any{"urls": paths}, &out)
	if err != nil {
		return 0, err
	}
	if code != http.StatusAccepted && code != http.StatusOK {
		return 0, fmt.Errorf("purge %v: %d %s", paths, code, body)
	}
	return out.Version, nil
}
