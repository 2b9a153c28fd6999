package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// errHelp means a command printed its help on request: exit 0, nothing more to say.
var errHelp = errors.New("help shown")

// resources are the queue, DLQ and stream names the tools work on: from the environment
// (QUEUE_NAME, DLQ_NAME, STREAM_NAME, with the processor's defaults), overridable by flags.
type resources struct {
	Queue, DLQ, Stream string
}

func resourcesFromEnv(getenv func(string) string) resources {
	return resources{
		Queue:  envValue(getenv, "QUEUE_NAME"),
		DLQ:    envValue(getenv, "DLQ_NAME"),
		Stream: envValue(getenv, "STREAM_NAME"),
	}
}

// newFlagSet makes a flag set whose errors are returned, not printed and exited on.
// synopsis is the first usage line, e.g. "event-processor dlq list [flags]"; about follows it.
func newFlagSet(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", synopsis, strings.TrimSpace(about))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.SetOutput(w)
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args. -h/--help prints the usage to stdout and returns errHelp; a bad flag
// or a stray argument is a usage error (exit 2) naming it, with the usage on stderr.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, allowArgs bool) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return errHelp
	case err != nil:
		fs.SetOutput(stderr)
		fs.Usage()
		return usagef("%s: %v", fs.Name(), err)
	case !allowArgs && fs.NArg() > 0:
		fs.SetOutput(stderr)
		fs.Usage()
		return usagef("%s: unexpected arguments %q", fs.Name(), strings.Join(fs.Args(), " "))
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device): progress bars, redrawn lines
// and text logs are for people; pipes and files get plain lines and JSON.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
