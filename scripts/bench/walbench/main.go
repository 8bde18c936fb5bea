// Command walbench is the driver behind scripts/bench/run.sh. It emulates
// PostgreSQL's archiver and recovery (one archive_command or
// restore_command call per WAL segment, in order, through /bin/sh -c),
// measures raw S3 PUT/GET of the same bytes on the same server, and renders
// the results table. Every measurement appends one JSON line to -out.
//
//	walbench mkbucket S3FLAGS BUCKET...
//	walbench raw      S3FLAGS -corpus DIR -segments N -conc C -id ID ...
//	walbench archive  -corpus DIR -segments N -pgdata DIR -mode single|backlog -cmd CMD ...
//	walbench restore  -corpus DIR -segments N -pgdata DIR -cmd CMD ...
//	walbench startup  -cmd CMD -n N ...
//	walbench codec    -corpus DIR -segments N ...
//	walbench keygen   FILE   (an age identity into FILE, 0600; prints its recipient)
//	walbench quiet    [-max PCT] [-timeout D]
//	walbench report   -in results.jsonl -md results.md
//
// S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
// WALBENCH_MARK (the work directory) lets the CPU notes tell the bench's
// processes from other jobs on the machine.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: walbench mkbucket|raw|archive|restore|startup|codec|keygen|quiet|report [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"mkbucket": cmdMkbucket,
		"raw":      cmdRaw,
		"archive":  cmdArchive,
		"restore":  cmdRestore,
		"startup":  cmdStartup,
		"codec":    cmdCodec,
		"keygen":   cmdKeygen,
		"quiet":    cmdQuiet,
		"report":   cmdReport,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "walbench: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "walbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
