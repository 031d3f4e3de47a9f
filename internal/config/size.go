package config

import (
	"fmt"
	"math"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"
)

// Size is a byte count that reads from YAML and flags as either a plain
// number of bytes or a human size such as "512MiB" or "2GB".
type Size int64

// ParseSize parses s as a byte count ("1048576", "1MiB", "64 KB").
func ParseSize(s string) (Size, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("parse size %q: %w", s, err)
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("parse size %q: too large", s)
	}
	return Size(n), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(node *yaml.Node) error {
	var raw string
	if err := node.Decode(&raw); err != nil {
		return err
	}
	v, err := ParseSize(raw)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// String formats s in IEC units, the form ParseSize reads back.
func (s Size) String() string { return humanize.IBytes(uint64(s)) }

// Set implements flag.Value.
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = n
	return nil
}
