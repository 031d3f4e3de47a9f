package configs

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

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

// TestExamplesShowEveryKey keeps the examples complete: every YAML key of
// a Config struct appears in its example file (where the comment beside
// it gives its default), so a new field cannot go undocumented. Keys
// under a list (sites, zones, edges) count when any item has them.
func TestExamplesShowEveryKey(t *testing.T) {
	tests := []struct {
		file string
		cfg  any
		// only limits the check to keys under these prefixes; except
		// leaves keys under these out (another example shows them).
		only, except []string
	}{
		{file: "standalone/edge.yaml", cfg: edge.Config{}, except: []string{"control"}},
		{file: "local/edge.yaml", cfg: edge.Config{}, only: []string{"control"}},
		{file: "local/control.yaml", cfg: control.Config{}},
		{file: "local/geodns.yaml", cfg: geodns.Config{}, except: []string{"edges"}},
		{file: "standalone/geodns.yaml", cfg: geodns.Config{}, only: []string{"edges"}},
		{file: "standalone/origin.yaml", cfg: static.Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			var doc yaml.Node
			if err := yaml.Unmarshal(b, &doc); err != nil {
				t.Fatalf("parse %s: %v", tt.file, err)
			}
			inFile := map[string]bool{}
			fileKeys(&doc, "", inFile)
			for _, k := range structKeys(reflect.TypeOf(tt.cfg), "") {
				if len(tt.only) > 0 && !under(k, tt.only) || under(k, tt.except) {
					continue
				}
				if !inFile[k] {
					t.Errorf("%s: key %s (from %T) is missing", tt.file, k, tt.cfg)
				}
			}
		})
	}
}

// under reports whether key is one of prefixes or under one.
func under(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if key == p || strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

// structKeys lists the dotted YAML keys of struct type t: every field with
// a yaml tag, and the fields of structs under it (through pointers and
// slices). A type that decodes itself (config.Size) is one key.
func structKeys(t reflect.Type, prefix string) []string {
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshaler) {
		return nil
	}
	var keys []string
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			keys = append(keys, structKeys(f.Type, prefix)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml's default
		}
		key := prefix + name
		keys = append(keys, key)
		keys = append(keys, structKeys(f.Type, key+".")...)
	}
	return keys
}

// fileKeys records the dotted keys of the YAML under n; list items add
// their keys under the list's own.
func fileKeys(n *yaml.Node, prefix string, keys map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			fileKeys(c, prefix, keys)
		}
	case yaml.AliasNode:
		fileKeys(n.Alias, prefix, keys)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := prefix + n.Content[i].Value
			keys[key] = true
			fileKeys(n.Content[i+1], key+".", keys)
		}
	}
}
