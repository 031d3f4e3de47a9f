package regions

import (
	"io"
	"strconv"
	"strings"
	"time"
)

// scrape reads a /metrics page from inside region r ("" on failure: a
// killed or cut-off process has none).
func (c *cluster) scrape(r region, url string) string {
	res, err := httpIn(c.w.nsName(r, "dc"), 3*time.Second).Get(url)
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// metric sums the samples of name in page whose labels contain every
// one of labels (`site="www"`).
func metric(page, name string, labels ...string) float64 {
	var sum float64
	for line := range strings.Lines(page) {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(rest, l)
		}
		if !all {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fields) > 0 {
			v, _ := strconv.ParseFloat(fields[0], 64)
			sum += v
		}
	}
	return sum
}

func edgeMetrics(r region, host int) string { return "http://" + addr(r, host) + ":9090/metrics" }
func geodnsMetrics(r region) string         { return "http://" + addr(r, hostGeoDNS) + ":9153/metrics" }
