// Command sluice is a log distributor: emitters POST packets of log messages to
// /ingest and sluice routes each whole packet to one of several analyzers so that
// each receives its configured share of messages. See README.md.
//
//	sluice distributor   the distributor (configured like the seed: PORT, ANALYZERS, ...)
//	sluice analyzer      the reference analyzer
//	sluice emitter       the load generator
//	sluice demo          distributor + three analyzers + emitter + live view on loopback
//	sluice version       version, commit and Go version of this build
package main

import (
	"fmt"
	"os"

	"github.com/sluicelog/sluice/analyzer"
	"github.com/sluicelog/sluice/buildinfo"
	"github.com/sluicelog/sluice/demo"
	"github.com/sluicelog/sluice/emitter"
	"github.com/sluicelog/sluice/proxy"
)

const usage = `usage: sluice <command> [flags]

commands:
  distributor   route log packets to analyzers by message weight
  analyzer      the reference analyzer
  emitter       generate load against a distributor
  demo          run a local pipeline with a live view (what "make run" starts)
  version       print the version, commit and Go version (also --version)

"sluice <command> -h" lists a command's flags; each also reads environment variables.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "distributor":
		return proxy.Main(args[1:])
	case "analyzer":
		return analyzer.Main(args[1:])
	case "emitter":
		return emitter.Main(args[1:])
	case "demo":
		return demo.Main(args[1:])
	case "version", "-version", "--version":
		fmt.Fprintln(os.Stdout, buildinfo.Get())
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "sluice: unknown command %q\n\n%s", args[0], usage)
	return 2
}
