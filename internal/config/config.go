package config

import (
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// Validator is implemented by every component Config. Validate reports all
// problems at once, each naming the field, so the operator fixes the file in
// one pass.
type Validator interface {
	Validate() error
}

// Load decodes the YAML file at path into cfg, which must already hold the
// component's defaults, then validates it. An empty path or an empty file
// leaves the defaults in place and still validates them.
func Load(path string, cfg Validator) error {
	if path != "" {
		if err := DecodeFile(path, cfg); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		if path == "" {
			return fmt.Errorf("check config: %w", err)
		}
		return fmt.Errorf("check %s: %w", path, err)
	}
	return nil
}

// Decode reads YAML from r into cfg, rejecting keys that cfg does not have.
// An empty document is not an error: it means "all defaults".
func Decode(r io.Reader, cfg any) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// DecodeFile decodes the YAML file at path into cfg without validating, for
// callers that apply command-line overrides before they validate.
func DecodeFile(path string, cfg any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	if err := Decode(f, cfg); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
