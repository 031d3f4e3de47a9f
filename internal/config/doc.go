// Package config loads a component's YAML configuration file: the caller's
// defaults first, then the file decoded strictly (unknown keys are errors,
// naming the line), then the component's own Validate, which reports
// every problem at once (Problems), each named by its key. An empty file
// means all defaults. Size reads byte counts as a number or a human size
// ("512MiB"), in YAML and in flags.
//
// The package holds no state: every Config is the caller's value.
package config
