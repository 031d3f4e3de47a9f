package config

import (
	"errors"
	"fmt"
)

// Problems gathers what is wrong with a config, so that Validate reports
// every problem at once.
type Problems struct{ errs []error }

// Check records the problem format describes unless ok.
func (p *Problems) Check(ok bool, format string, args ...any) {
	if !ok {
		p.errs = append(p.errs, fmt.Errorf(format, args...))
	}
}

// Add records err, if it is one.
func (p *Problems) Add(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// Err is every recorded problem, nil when there is none.
func (p *Problems) Err() error { return errors.Join(p.errs...) }
