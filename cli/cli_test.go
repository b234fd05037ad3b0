package cli

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func command() (*Command, *int, *bool, *time.Duration) {
	fs := flag.NewFlagSet("sluice x", flag.ContinueOnError)
	n := fs.Int("count", 3, "how many")
	b := fs.Bool("json", false, "print JSON")
	d := fs.Duration("timeout", time.Second, "how long")
	c := &Command{Name: "sluice x", Summary: "does x", Flags: fs,
		Env: func(f string) string { return "X_" + strings.ToUpper(f) }}
	return c, n, b, d
}

func TestParseEnvThenFlags(t *testing.T) {
	c, n, b, d := command()
	env := map[string]string{"X_COUNT": "7", "X_TIMEOUT": "5s"}
	if err := c.Parse([]string{"--json", "--timeout", "2s"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *n != 7 || !*b || *d != 2*time.Second {
		t.Fatalf("count %d json %t timeout %v: want 7 from the variable, true, 2s from the flag", *n, *b, *d)
	}
}

func TestParseBadValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--count", "abc"}, nil, `--count="abc": want a whole number`},
		{[]string{"-timeout=soon"}, nil, `--timeout="soon": want a duration`},
		{[]string{"--json=maybe"}, nil, `--json="maybe": want true or false`},
		{nil, map[string]string{"X_COUNT": "many"}, `X_COUNT="many": want a whole number`},
		{[]string{"--nope"}, nil, "flag provided but not defined: -nope"},
		{[]string{"--count"}, nil, "flag needs an argument: -count"},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
	} {
		c, _, _, _ := command()
		err := c.Parse(tc.args, func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want %q", tc.args, tc.env, err, tc.want)
		}
		var out strings.Builder
		if code := c.Fail(&out, err); code != 2 || strings.Count(out.String(), "\n") != 1 ||
			!strings.HasPrefix(out.String(), "sluice x: ") || !strings.HasSuffix(out.String(), "; run 'sluice x -h' for usage\n") {
			t.Errorf("%v: Fail exit %d printed %q; want 2 and one line with the hint", tc.args, code, out.String())
		}
	}
}

func TestHelp(t *testing.T) {
	c, _, _, _ := command()
	if err := c.Parse([]string{"-h"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	var out strings.Builder
	c.Usage(&out)
	for _, want := range []string{"usage: sluice x [flags]\n", "does x", "  --count N\n        how many\n        (env X_COUNT, default \"3\")\n",
		"  --json\n", "  --timeout DURATION\n", "env X_TIMEOUT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help has no %q:\n%s", want, out.String())
		}
	}
}
