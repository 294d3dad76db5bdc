package main

import (
	"fmt"
	"io"
	"strings"

	flag "github.com/spf13/pflag"
)

// printFlags writes the flags of set one a line, aligned, as a person reads them: a switch
// bare ("-f, --foreground"), a flag taking a value with the value's name ("--lower DIR", the
// name written in backquotes in its usage, as pflag reads it). pflag's own listing shows
// "[=true|false]" after every switch and Go type names for values.
func printFlags(w io.Writer, set *flag.FlagSet) {
	type row struct{ name, usage string }
	var rows []row
	width := 0
	set.VisitAll(func(f *flag.Flag) {
		if f.Hidden {
			return
		}
		arg, usage := flag.UnquoteUsage(f)
		name := "    --" + f.Name
		if f.Shorthand != "" {
			name = "-" + f.Shorthand + ", --" + f.Name
		}
		if f.Value.Type() != "bool" {
			if !strings.Contains(f.Usage, "`") {
				arg = "VALUE"
			}
			name += " " + arg
		}
		rows = append(rows, row{name, usage})
		width = max(width, len(name))
	})
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s   %s\n", width, r.name, r.usage)
	}
}
