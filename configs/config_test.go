package configs

import (
	"testing"

	"github.com/selfcdn/cdn/control"
	"github.com/selfcdn/cdn/edge"
	"github.com/selfcdn/cdn/geodns"
	"github.com/selfcdn/cdn/internal/config"
	"github.com/selfcdn/cdn/origin/static"
)

// TestExamplesLoad keeps the example files in step with the Config structs.
func TestExamplesLoad(t *testing.T) {
	ecfg := edge.DefaultConfig()
	if err := config.Load("standalone/edge.yaml", &ecfg); err != nil {
		t.Errorf("standalone/edge.yaml: %v", err)
	}
	lcfg := edge.DefaultConfig()
	if err := config.Load("local/edge.yaml", &lcfg); err != nil {
		t.Errorf("local/edge.yaml: %v", err)
	}
	ccfg := control.DefaultConfig()
	if err := config.Load("local/control.yaml", &ccfg); err != nil {
		t.Errorf("local/control.yaml: %v", err)
	}
	for _, f := range []string{"local/geodns.yaml", "standalone/geodns.yaml"} {
		gcfg := geodns.DefaultConfig()
		if err := config.Load(f, &gcfg); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, err := geodns.New(gcfg, geodns.Deps{}); err != nil { // the zones load too
			t.Errorf("%s: %v", f, err)
		}
	}
	ocfg := static.DefaultConfig()
	if err := config.Load("standalone/origin.yaml", &ocfg); err != nil {
		t.Errorf("standalone/origin.yaml: %v", err)
	}
}
