package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
)

// newAuditCmd is `mcpguard audit verify FILE…`: it checks that decision
// logs, oldest first (as rotated: decisions.log.1 before decisions.log),
// form one unbroken hash chain, and names the first record edited,
// inserted, deleted or cut short. Exit 0: intact (the head is printed, to
// keep elsewhere); 1: broken; 2: a file cannot be read, or no file given.
func newAuditCmd() *cobra.Command {
	audit := &cobra.Command{Use: "audit", Short: "Check the decision log"}
	audit.AddCommand(&cobra.Command{
		Use:   "verify FILE...",
		Short: "Verify that decision logs (oldest first) form one unbroken hash chain",
		Long: `Verify reads decision logs written by --decision-log, oldest first, and checks
the hash chain that links each record to the one before it. It prints the
first record that was edited, inserted, deleted or cut short, as
FILE:LINE: KIND: DETAIL, and exits 1; an intact chain prints its head
(records, last seq and digest) and exits 0. Records removed from the very
end cannot be seen by the chain itself: compare the head with one kept
elsewhere. Exit 2: a file cannot be read.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var srcs []decisionlog.Source
			for _, name := range args {
				f, err := os.Open(name)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				defer f.Close()
				srcs = append(srcs, decisionlog.Source{Name: name, R: f})
			}
			h, p := decisionlog.Verify(srcs)
			if p != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%v\n", p)
				return &exitError{code: exitFail, err: fmt.Errorf("the decision log's chain is broken after %d intact record(s)", h.Records)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d records, head seq %d %s\n", h.Records, h.Seq, h.Digest)
			return nil
		},
	})
	return audit
}
