package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/policy"
)

func newCheckConfigCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check-config [FILE]",
		Short: "Validate a policy file and print the effective policy (built-in defaults without FILE)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := policy.Defaults()
			if len(args) == 1 {
				var err error
				if cfg, err = policy.Load(args[0]); err != nil {
					return err
				}
			}
			out, err := cfg.YAML()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				// Valid but inert settings are worth a look before a reload.
				for _, w := range cfg.Warnings() {
					fmt.Fprintf(g.out, "# warning: %s\n", w)
				}
				fmt.Fprintf(g.out, "# %s is valid; effective policy:\n", args[0])
			} else {
				fmt.Fprintln(g.out, "# built-in policy:")
			}
			_, err = g.out.Write(out)
			return err
		},
	}
}
