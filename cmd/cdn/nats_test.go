package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/control"
)

// TestNATSOptions: `cdn nats` runs a stock nats-server file, but refuses
// one that would leave the network open or without its state.
func TestNATSOptions(t *testing.T) {
	dir := t.TempDir()
	auth, err := control.OpenAuthority(filepath.Join(dir, "control"))
	if err != nil {
		t.Fatal(err)
	}
	trust, err := auth.ServerConfig(filepath.Join(dir, "accounts"))
	if err != nil {
		t.Fatal(err)
	}
	const node = "server_name: n1\nlisten: 127.0.0.1:-1\n"
	const js = "jetstream { store_dir: %q }\n"
	tests := []struct {
		name, conf string
		wantErr    string // "" for none
	}{
		{name: "node", conf: node + strings.Replace(js, "%q", `"`+dir+`/js"`, 1) + trust},
		{name: "no operator", conf: node + strings.Replace(js, "%q", `"`+dir+`/js"`, 1), wantErr: "no operator"},
		{name: "no jetstream", conf: node + trust, wantErr: "jetstream is off"},
		{name: "cluster without a name", conf: node + strings.Replace(js, "%q", `"`+dir+`/js"`, 1) + trust +
			"cluster { listen: 127.0.0.1:-1 }\n", wantErr: "cluster.name is empty"},
		{name: "unnamed node", conf: "listen: 127.0.0.1:-1\n" + strings.Replace(js, "%q", `"`+dir+`/js"`, 1) + trust, wantErr: "server_name is empty"},
		{name: "not a config", conf: "listen: {{{\n", wantErr: "read "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "nats.conf")
			if err := os.WriteFile(path, []byte(tt.conf), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := natsOptions(path)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("natsOptions = %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("natsOptions = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}
