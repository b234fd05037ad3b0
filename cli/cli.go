// Package cli is the one command-line format of sluice's subcommands: the help
// that -h prints (every flag with the environment variable it overrides) and the
// one line a bad value gets, with a hint to -h, instead of the whole usage.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// ExitUsage is the exit status of a bad flag or variable.
const ExitUsage = 2

// Error is a bad configuration value. Name is the flag as typed on a command line
// ("--port") or the environment variable ("PORT"). The value of a secret setting
// (SecretName) is never shown: the line names the setting and the problem only.
type Error struct {
	Name, Value, Problem string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s=%q: %s", e.Name, Redact(e.Name, e.Value), e.Problem)
}

// Redacted stands for a secret value in errors, logs and configuration dumps.
const Redacted = "[redacted]"

// SecretName reports whether a setting, by its variable, flag or file key name,
// holds a secret: its name says token, secret or password.
func SecretName(name string) bool {
	name = strings.ToUpper(name)
	for _, w := range []string{"TOKEN", "SECRET", "PASSWORD"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// Redact is v, or Redacted for a secret setting with a value (an empty one is
// shown as empty: "not set" is no secret).
func Redact(name, v string) string {
	if v != "" && SecretName(name) {
		return Redacted
	}
	return v
}

// Command describes one subcommand for Parse and Usage.
type Command struct {
	Name    string        // as typed: "sluice analyzer"
	Summary string        // one or more lines under the usage line
	Flags   *flag.FlagSet // its flags, each with its usage text and default
	// Env names the environment variable a flag overrides; "" for none.
	Env func(flag string) string
	// Notes, when set, are printed after the flags.
	Notes string
}

// Parse parses args with c.Flags. Before the flags, when getenv is not nil, every
// flag whose variable is set takes the variable's value, so a flag wins over its
// variable. It never prints: a bad value comes back as an *Error naming the flag
// or variable, -h as flag.ErrHelp, an unknown flag or a missing value as the flag
// package's one-line error.
func (c *Command) Parse(args []string, getenv func(string) string) error {
	fs := c.Flags
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var bad *Error
	fs.VisitAll(func(f *flag.Flag) {
		f.Value = wrap(f, &bad)
	})
	if getenv != nil && c.Env != nil {
		var envErr error
		fs.VisitAll(func(f *flag.Flag) {
			env := c.Env(f.Name)
			if env == "" || envErr != nil {
				return
			}
			if v := getenv(env); v != "" {
				if err := fs.Set(f.Name, v); err != nil {
					envErr = &Error{env, v, bad.Problem}
				}
			}
		})
		if envErr != nil {
			return envErr
		}
	}
	if err := fs.Parse(args); err != nil {
		if bad != nil && !errors.Is(err, flag.ErrHelp) {
			return bad
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// Fail prints err as one line on w, with a hint to -h, and returns ExitUsage.
func (c *Command) Fail(w io.Writer, err error) int {
	return Fail(w, c.Name, err)
}

// Fail prints "<command>: <err>; run '<command> -h' for usage" on w and returns
// ExitUsage.
func Fail(w io.Writer, command string, err error) int {
	fmt.Fprintf(w, "%s: %v; run '%s -h' for usage\n", command, err, command)
	return ExitUsage
}

// Usage writes the help: usage line, summary, then each flag as
//
//	--name VALUE
//	      what it does
//	      env NAME, default "x"
func (c *Command) Usage(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s [flags]\n", c.Name)
	if c.Summary != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(c.Summary, "\n"))
	}
	b.WriteString("\nflags (a flag wins over its environment variable):\n")
	c.Flags.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(&b, "  --%s", f.Name)
		if arg := argName(f); arg != "" {
			b.WriteString(" " + arg)
		}
		b.WriteString("\n")
		for _, line := range strings.Split(f.Usage, "\n") {
			fmt.Fprintf(&b, "        %s\n", line)
		}
		var src []string
		if c.Env != nil {
			if env := c.Env(f.Name); env != "" {
				src = append(src, "env "+env)
			} else {
				src = append(src, "command line only") // a mode such as --check, not a setting
			}
		}
		if f.DefValue != "" {
			src = append(src, "default "+fmt.Sprintf("%q", f.DefValue))
		}
		if len(src) > 0 {
			fmt.Fprintf(&b, "        (%s)\n", strings.Join(src, ", "))
		}
	})
	if c.Notes != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(c.Notes, "\n"))
	}
	_, _ = io.WriteString(w, b.String())
}

// argName is the placeholder of a flag's value in the help: none for a boolean.
func argName(f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return ""
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "VALUE"
	}
	switch g.Get().(type) {
	case int, int64, uint, uint64:
		return "N"
	case float64:
		return "NUMBER"
	case time.Duration:
		return "DURATION"
	}
	return "VALUE"
}

// problem turns the flag package's terse errors ("parse error") into what the
// value should have been.
func problem(f *flag.Flag, err error) string {
	msg := err.Error()
	if msg != "parse error" && msg != "value out of range" {
		return msg
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "want true or false"
	}
	switch argName(f) {
	case "N":
		if msg == "value out of range" {
			return "number out of range"
		}
		return "want a whole number"
	case "NUMBER":
		return "want a number"
	case "DURATION":
		return "want a duration such as 500ms, 10s or 2m"
	}
	return msg
}

// wrap makes a flag's Set record a failure as an *Error in *bad, keeping whether
// the flag is boolean (so --flag alone still means true).
func wrap(f *flag.Flag, bad **Error) flag.Value {
	r := &recorder{Value: f.Value, f: f, bad: bad}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return &boolRecorder{r}
	}
	return r
}

type recorder struct {
	flag.Value
	f   *flag.Flag
	bad **Error
}

func (r *recorder) Set(v string) error {
	err := r.Value.Set(v)
	if err != nil {
		inner := *r.f
		inner.Value = r.Value
		*r.bad = &Error{"--" + r.f.Name, v, problem(&inner, err)}
		return errors.New((*r.bad).Problem)
	}
	return nil
}

func (r *recorder) Get() any {
	if g, ok := r.Value.(flag.Getter); ok {
		return g.Get()
	}
	return r.Value.String()
}

type boolRecorder struct{ *recorder }

func (boolRecorder) IsBoolFlag() bool { return true }
