package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/gossipmesh/mesh/agent"
)

// usageError is a command line the command cannot run: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// newFlags returns a flag set that prints nothing by itself:
// parseCommand reports errors as one line and -h as the full usage.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args, flags and positional arguments in any order (`mesh
// join A --timeout 3s B`). "--" ends flags.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// printUsage writes a command's usage and flags.
func printUsage(w io.Writer, fs *flag.FlagSet, args, summary string) {
	fmt.Fprintf(w, "Usage: mesh %s %s\n\n%s\n\nFlags:\n", fs.Name(), args, summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parseCommand parses a command's flags; it returns the positional
// arguments, or an exit code when the command is done (help or error).
func parseCommand(fs *flag.FlagSet, args []string, use, summary string, stdout, stderr io.Writer) ([]string, int, bool) {
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, fs, use, summary)
		return nil, exitOK, false
	}
	if err != nil {
		fail(stderr, fs.Name(), err)
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// fail prints err as one line, naming the command, with a hint for usage
// errors, and returns the exit code.
func fail(stderr io.Writer, cmd string, err error) int {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	var u *usageError
	if errors.As(err, &u) {
		fmt.Fprintf(stderr, "mesh %s: %s (see 'mesh %s -h')\n", cmd, msg, cmd)
		return exitUsage
	}
	fmt.Fprintf(stderr, "mesh %s: %s\n", cmd, msg)
	return exitFail
}

// listFlag collects a repeatable flag whose values may also be
// comma-separated (--join a,b --join c).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// tagFlag collects repeatable k=v pairs.
type tagFlag map[string]string

func (t tagFlag) String() string { return formatTags(t) }

func (t tagFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	t[k] = val
	return nil
}

// choiceFlag is a string limited to a few values.
type choiceFlag struct {
	v       string
	choices []string
}

func (c *choiceFlag) String() string { return c.v }

func (c *choiceFlag) Set(v string) error {
	for _, ch := range c.choices {
		if v == ch {
			c.v = v
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(c.choices, ", "))
}

// handlerFlag collects repeatable --event-handler values.
type handlerFlag []agent.EventHandler

func (h *handlerFlag) String() string {
	var s []string
	for _, e := range *h {
		s = append(s, e.String())
	}
	return strings.Join(s, " ")
}

func (h *handlerFlag) Set(v string) error {
	e, err := agent.ParseEventHandler(v)
	if err != nil {
		// The flag package names the flag and value itself.
		_, msg, _ := strings.Cut(err.Error(), ": ")
		return errors.New(msg)
	}
	*h = append(*h, e)
	return nil
}
