package main

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestWaitFlag: --wait alone, with a value after "=" or as the next
// argument, and --timeout, as cdn push, purge and rollback read them.
func TestWaitFlag(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		want     time.Duration
		wantPos  []string
		wantErr  string // a substring; "" for none
		wantText string // String() after parsing; "" not checked
	}{
		{name: "none", args: []string{"dir"}, want: 0, wantPos: []string{"dir"}, wantText: "false"},
		{name: "alone waits up to the default timeout", args: []string{"--wait", "dir"}, want: 5 * time.Minute, wantPos: []string{"dir"}, wantText: "true"},
		{name: "alone, last", args: []string{"dir", "--wait"}, want: 5 * time.Minute, wantPos: []string{"dir"}},
		{name: "alone with --timeout", args: []string{"-wait", "--timeout", "90s"}, want: 90 * time.Second},
		{name: "timeout without wait does not wait", args: []string{"--timeout", "90s"}, want: 0},
		{name: "equals", args: []string{"--wait=30s"}, want: 30 * time.Second, wantText: "30s"},
		{name: "next argument", args: []string{"--wait", "2m", "dir"}, want: 2 * time.Minute, wantPos: []string{"dir"}},
		{name: "value wins over timeout", args: []string{"--timeout", "1m", "--wait=10s"}, want: 10 * time.Second},
		{name: "true", args: []string{"--wait=true"}, want: 5 * time.Minute},
		{name: "false", args: []string{"--wait=false"}, want: 0},
		{name: "zero", args: []string{"--wait", "0"}, want: 0},
		{name: "a path is not its value", args: []string{"--wait", "./30s"}, want: 5 * time.Minute, wantPos: []string{"./30s"}},
		{name: "another flag's value is left alone", args: []string{"--message", "--wait", "30s"}, want: 0, wantPos: []string{"30s"}},
		{name: "after -- all positional", args: []string{"--", "--wait", "30s"}, want: 0, wantPos: []string{"--wait", "30s"}},
		{name: "negative", args: []string{"--wait", "-1s"}, wantErr: "--wait -1s: want 0 to 5m0s"},
		{name: "over the API's bound", args: []string{"--wait=6m"}, wantErr: "--wait 6m0s: want 0 to 5m0s"},
		{name: "timeout over the bound", args: []string{"--wait", "--timeout=1h"}, wantErr: "--timeout 1h0m0s"},
		{name: "timeout zero", args: []string{"--wait", "--timeout=0s"}, wantErr: "--timeout 0s"},
		{name: "not a duration", args: []string{"--wait=soon"}, wantErr: "a duration (30s, 2m) or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w waitFlag
			var message string
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.StringVar(&message, "message", "", "")
			w.register(fs, "serve it")
			pos, err := parseInterleaved(fs, tt.args)
			var got time.Duration
			if err == nil {
				got, err = w.duration()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("%q: error %v, want one with %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || !slices.Equal(pos, tt.wantPos) {
				t.Errorf("%q: wait %s, args %q, %v; want %s, %q", tt.args, got, pos, err, tt.want, tt.wantPos)
			}
			if tt.wantText != "" && w.String() != tt.wantText {
				t.Errorf("%q: String() = %q, want %q", tt.args, w.String(), tt.wantText)
			}
		})
	}
}

func TestFlagName(t *testing.T) {
	tests := []struct {
		arg, want string
		hasValue  bool
	}{
		{arg: "--wait", want: "wait"},
		{arg: "-wait", want: "wait"},
		{arg: "--wait=3s", want: "wait", hasValue: true},
		{arg: "-", want: ""},
		{arg: "--", want: ""},
		{arg: "---wait", want: ""},
		{arg: "dir", want: ""},
		{arg: "-=x", want: ""},
	}
	for _, tt := range tests {
		if got, hasValue := flagName(tt.arg); got != tt.want || hasValue != tt.hasValue {
			t.Errorf("flagName(%q) = %q, %v; want %q, %v", tt.arg, got, hasValue, tt.want, tt.hasValue)
		}
	}
}
