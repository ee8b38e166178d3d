// Command polite shows what the polite transport stack does, from the command line.
//
// Usage:
//
//	polite demo  [-workers N] [-duration D] [-seed S]
//	polite get   [-H 'Name: value']... [-X METHOD] [-d body] [-timeout D] URL
//	polite probe [-n N] [-c C] URL [URL...]
//
// The verbs:
//
//   - demo starts a fake rate-limited API (package politetest) with a quota and seeded faults, runs the
//     same concurrent workload through a plain http.Client and through one using polite.New, each against
//     a fresh server, and prints a side-by-side table: requests the server received, successes, 429s,
//     5xx seen by the caller, retries, time spent waiting, and latency percentiles. On a terminal it
//     shows a live progress line on stderr while the workloads run.
//   - get sends one request through the stack and prints its timeline to stderr (each attempt with
//     its status and rate-limit headers, each wait and why) and the response body to stdout.
//   - probe sends a batch of requests with some concurrency through the stack and reports how the
//     server's rate-limit headers evolved, how many 429s reached the caller against how many waits the
//     throttle made instead, the retries, the achieved rate, the status counts, and the buckets the
//     throttle learned; with several URLs, the requests go to each in turn.
//
// Each verb prints its own help with -h. Exit status: 0 on success; 1 when get's final response is a
// 4xx or 5xx; 2 on a usage error, a bad URL or header, or a request that got no response at all.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// main runs the command on the process's arguments and exits with its status.
func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit statuses of run.
const (
	exitOK     = 0 // success, or help asked for
	exitStatus = 1 // get: the final response was a 4xx or 5xx
	exitUsage  = 2 // bad invocation, or the request failed without a response
)

// verbs maps each verb to the function that runs it. Each takes the arguments after the verb.
var verbs = map[string]func(args []string, stdout, stderr io.Writer) int{
	"demo":    runDemo,
	"get":     runGet,
	"probe":   runProbe,
	"version": runVersion,
}

// runVersion prints the module's version as the build recorded it ("(devel)" for a build from a
// checkout), and the Go version that built it.
func runVersion(_ []string, stdout, _ io.Writer) int {
	version := "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	fmt.Fprintf(stdout, "polite %s, %s\n", version, runtime.Version())
	return exitOK
}

// overallUsage is the help for the command as a whole.
const overallUsage = `usage: polite <verb> [flags] [args]

Verbs:
  demo   compare a plain http.Client with the polite stack against a fake rate-limited API
  get    send one request through the polite stack and show its timeline
  probe  send a batch of requests through the stack and report the server's rate limits
  version  print the version of polite and of Go that built this command

Run 'polite <verb> -h' for the flags of a verb.
`

// run is the whole command: it dispatches args to a verb, writes the output to stdout and stderr, and
// returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, overallUsage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, overallUsage)
		return exitOK
	}
	verb, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "polite: unknown verb %q\n\n", args[0])
		fmt.Fprint(stderr, overallUsage)
		return exitUsage
	}
	return verb(args[1:], stdout, stderr)
}

// failf prints one "polite: ..." line to stderr and returns exitUsage.
func failf(stderr io.Writer, format string, a ...any) int {
	msg := fmt.Sprintf(format, a...)
	msg = strings.Join(strings.Fields(msg), " ") // one line, whatever an error message held
	fmt.Fprintln(stderr, "polite: "+msg)
	return exitUsage
}

// newFlagSet returns a FlagSet for verb whose Usage writes synopsis, description and the flag
// defaults. Its output goes nowhere until parseFlags points it at the help buffer.
func newFlagSet(verb, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: polite %s %s\n\n%s\nFlags:\n", verb, synopsis, description)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args with fs, letting flags and positional arguments be mixed ("get URL -H x").
// It returns the positional arguments, or done with the exit status when the verb must stop: 0 after
// writing the verb's help to stdout for -h or --help, 2 after writing one error line to stderr.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (positional []string, code int, done bool) {
	var help strings.Builder
	fs.SetOutput(&help) // flag.Parse calls Usage on -h and on errors; only -h shows what it wrote
	defer fs.SetOutput(io.Discard)
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, help.String())
				return nil, exitOK, true
			}
			return nil, failf(stderr, "%s: %v (see 'polite %s -h')", fs.Name(), err, fs.Name()), true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, 0, false
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), 0, false // after "--" everything is positional
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
