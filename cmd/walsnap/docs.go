package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/internal/buildinfo"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print walsnap's version, commit and Go version (also: walsnap --version)",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print them as JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "version takes no arguments"}
			}
			return printVersion(c.App.Writer, c.Bool("json"))
		},
	}
}

// printVersion writes the version line (or JSON) to w.
func printVersion(w io.Writer, asJSON bool) error {
	if asJSON {
		return printJSON(map[string]string{"version": buildinfo.Version(), "commit": buildinfo.Commit(), "go": buildinfo.GoVersion()})
	}
	_, err := fmt.Fprintf(w, "walsnap %s (commit %s, %s)\n", buildinfo.Version(), buildinfo.Commit(), buildinfo.GoVersion())
	return err
}

func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "show the commands, or one command's options",
		ArgsUsage: "[COMMAND]",
		Action: func(c *cli.Context) error {
			switch c.NArg() {
			case 0:
				return cli.ShowAppHelp(c)
			case 1:
				name := c.Args().First()
				if cmd := c.App.Command(name); cmd == nil || cmd.Hidden {
					return unknownCommand(c.App, name)
				}
				return cli.ShowCommandHelp(c, name)
			}
			return usageError{msg: "help takes at most one command"}
		},
	}
}

// Shell completion scripts. Both ask walsnap itself for the words that
// can come next (urfave/cli's --generate-bash-completion), so they follow
// the command definitions without being regenerated.
const (
	bashCompletion = `# bash completion for walsnap (walsnap completion bash)
_walsnap() {
	local cur=${COMP_WORDS[COMP_CWORD]} words
	if [[ $cur == -* ]]; then
		words=$("${COMP_WORDS[@]:0:COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		words=$("${COMP_WORDS[@]:0:COMP_CWORD}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o bashdefault -o default -F _walsnap walsnap
`
	zshCompletion = `#compdef walsnap
# zsh completion for walsnap (walsnap completion zsh): install as _walsnap in
# a directory of $fpath, or source it.
compdef _walsnap walsnap
_walsnap() {
	local -a opts
	local cur=${words[-1]}
	if [[ $cur == -* ]]; then
		opts=("${(@f)$(_CLI_ZSH_AUTOCOMPLETE_HACK=1 ${words[@]:0:#words[@]-1} $cur --generate-bash-completion 2>/dev/null)}")
	else
		opts=("${(@f)$(_CLI_ZSH_AUTOCOMPLETE_HACK=1 ${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
	fi
	if [[ -n ${opts[1]} ]]; then
		_describe 'values' opts
	else
		_files
	fi
}
if [[ $funcstack[1] == _walsnap ]]; then
	_walsnap "$@"
fi
`
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: "make install puts them where bash-completion and zsh look. By hand:\n" +
			"  walsnap completion bash > /usr/share/bash-completion/completions/walsnap\n" +
			"  walsnap completion zsh > /usr/local/share/zsh/site-functions/_walsnap",
		Action: func(c *cli.Context) error {
			script := map[string]string{"bash": bashCompletion, "zsh": zshCompletion}[c.Args().First()]
			if c.NArg() != 1 || script == "" {
				return usageError{msg: "completion takes one argument: bash or zsh"}
			}
			_, err := io.WriteString(c.App.Writer, script)
			return err
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print the manual page (troff), made from the command definitions",
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "man takes no arguments"}
			}
			page, err := docApp().ToMan()
			if err != nil {
				return err
			}
			_, err = io.WriteString(c.App.Writer, page)
			return err
		},
	}
}

// docApp is the app as the manual shows it: the settings once, among the
// global options, and each command with its own options.
func docApp() *cli.App {
	app := newApp()
	for _, cmd := range app.Commands {
		cmd.Flags = slices.DeleteFunc(cmd.Flags, func(f cli.Flag) bool {
			cf, ok := f.(cli.CategorizableFlag)
			return ok && cf.GetCategory() == settingsCategory
		})
	}
	return app
}
