package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/inject"
)

func newInjectCmd() *cobra.Command {
	var (
		f             injectFlags
		file          string
		onlyAnnotated bool
	)
	cmd := &cobra.Command{
		Use:   "inject -f FILE|- --image IMAGE --upstream URL --audience AUD",
		Short: "Print manifests with the mcpguard sidecar injected, as the webhook would",
		Long: `Read Kubernetes manifests (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job, CronJob; several documents separated by ---; - for stdin) and print them
with the sidecar injected by the same Mutate the webhook runs, for GitOps and
for review. Other kinds and skipped pods are printed as they came.

Pods are injected unless annotated ` + inject.AnnotationInject + `: "false", as in a namespace
labelled ` + inject.LabelNamespaceInject + `=` + inject.LabelNamespaceInjectEnabled + `; with --only-annotated, only pods annotated "true".
A pod the webhook would refuse is reported on stderr and the command exits 1.
Every flag can also be set as ` + webhookEnvPrefix + `<FLAG>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagsFromEnvPrefixed(cmd.Flags()); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			cfg, err := f.config()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			var in io.Reader
			switch file {
			case "":
				return &exitError{code: exitUsage, err: errors.New("-f FILE is required (- for stdin)")}
			case "-":
				in = cmd.InOrStdin()
			default:
				fh, err := os.Open(file)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				defer fh.Close()
				in = fh
			}
			scope := inject.ScopeNamespace
			if onlyAnnotated {
				scope = inject.ScopePod
			}
			warn := func(doc, w string) { fmt.Fprintf(cmd.ErrOrStderr(), "mcpguard inject: %s: warning: %s\n", doc, w) }
			err = inject.Manifests(in, cmd.OutOrStdout(), warn, &cfg, scope)
			if _, ok := errors.AsType[*inject.ManifestError](err); ok {
				return &exitError{code: exitFail, err: err}
			}
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			return nil
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest file, or - for stdin")
	cmd.Flags().BoolVar(&onlyAnnotated, "only-annotated", false, `inject only pods annotated `+inject.AnnotationInject+`: "true"`)
	return cmd
}
