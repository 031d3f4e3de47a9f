package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/selfcdn/cdn/purge"
)

// waitFlag is --wait, with --timeout, as helm and kubectl have them:
// "--wait" alone waits up to --timeout (default purge.MaxWait, the
// longest wait control accepts), "--wait=30s" up to 30 seconds, and
// "--wait=false", "--wait=0" or no --wait not at all. "--wait 30s" (the
// value as the next argument, the form of earlier versions) still reads
// as "--wait=30s": see joinFlagValues. The zero value does not wait.
type waitFlag struct {
	on bool
	// d is the duration given with --wait; zero: --timeout's.
	d       time.Duration
	timeout time.Duration
}

// register adds --wait and --timeout to fs; what is the thing waited for
// ("apply the purge", "serve the release").
func (w *waitFlag) register(fs *flag.FlagSet, what string) {
	fs.Var(w, "wait", fmt.Sprintf("wait for every edge not down or draining to %s, up to --timeout (or --wait=DURATION); exit 1 if not", what))
	fs.DurationVar(&w.timeout, "timeout", purge.MaxWait, fmt.Sprintf("how long --wait waits, at most %s", purge.MaxWait))
}

// IsBoolFlag lets --wait stand without a value.
func (w *waitFlag) IsBoolFlag() bool { return true }

func (w *waitFlag) String() string {
	switch {
	case w == nil || !w.on:
		return "false"
	case w.d != 0:
		return w.d.String()
	}
	return "true"
}

func (w *waitFlag) Set(s string) error {
	if b, err := strconv.ParseBool(s); err == nil {
		w.on, w.d = b, 0
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want nothing (wait up to --timeout), a duration (30s, 2m) or false")
	}
	// A negative duration is kept, for duration to refuse by name.
	w.on, w.d = d != 0, d
	return nil
}

// takesNext reports whether arg, following a bare --wait, is its value.
func (w *waitFlag) takesNext(arg string) bool {
	_, err := time.ParseDuration(arg)
	return err == nil
}

// duration is how long to wait: 0 for not at all.
func (w *waitFlag) duration() (time.Duration, error) {
	if !w.on {
		return 0, nil
	}
	if w.d != 0 {
		if w.d < 0 || w.d > purge.MaxWait {
			return 0, usageError{fmt.Errorf("--wait %s: want 0 to %s", w.d, purge.MaxWait)}
		}
		return w.d, nil
	}
	if w.timeout <= 0 || w.timeout > purge.MaxWait {
		return 0, usageError{fmt.Errorf("--timeout %s: want more than 0, at most %s", w.timeout, purge.MaxWait)}
	}
	return w.timeout, nil
}

// nextValue is a flag whose value may be left out, or given as the next
// argument when takesNext accepts it.
type nextValue interface {
	flag.Value
	takesNext(arg string) bool
}

// joinFlagValues rewrites "--wait 30s" as "--wait=30s" for fs's flags
// that take an optional value (nextValue), since the flag package reads a
// boolean flag's next argument as positional. It walks args as fs.Parse
// would: the value of a flag that takes one is skipped, and nothing after
// "--" is touched.
func joinFlagValues(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			return append(out, args[i+1:]...)
		}
		name, hasValue := flagName(a)
		if name == "" || hasValue {
			continue
		}
		f := fs.Lookup(name)
		if f == nil || i+1 == len(args) {
			continue
		}
		if nv, ok := f.Value.(nextValue); ok {
			if nv.takesNext(args[i+1]) {
				out[len(out)-1] = a + "=" + args[i+1]
				i++
			}
			continue
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		// A flag with a value: that value is not a flag.
		i++
		out = append(out, args[i])
	}
	return out
}

// flagName returns the name of a flag argument ("-x", "--x", "--x=v") and
// whether it carries its value; "" when arg is not a flag.
func flagName(arg string) (string, bool) {
	if len(arg) < 2 || arg[0] != '-' {
		return "", false
	}
	name := strings.TrimPrefix(arg[1:], "-")
	if name == "" || name[0] == '-' || name[0] == '=' {
		return "", false
	}
	name, _, hasValue := strings.Cut(name, "=")
	return name, hasValue
}
