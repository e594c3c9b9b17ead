package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

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
			return injectStream(in, cmd.OutOrStdout(), cmd.ErrOrStderr(), &cfg, scope)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest file, or - for stdin")
	cmd.Flags().BoolVar(&onlyAnnotated, "only-annotated", false, `inject only pods annotated `+inject.AnnotationInject+`: "true"`)
	return cmd
}

// injectStream injects every document of in and writes them to out.
func injectStream(in io.Reader, out, errOut io.Writer, cfg *inject.Config, scope inject.Scope) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(in))
	var refused []string
	first := true
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("document %d: %w", n, err)}
		}
		if isBlank(doc) {
			continue
		}
		obj, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("document %d: %w", n, err)}
		}
		name := describe(obj, n)
		mutated, res, err := inject.InjectObject(obj, cfg, scope)
		text := doc
		switch {
		case err != nil:
			refused = append(refused, fmt.Sprintf("%s: %v", name, err))
		case res.Skip == "" && !bytes.Equal(mutated, obj):
			if text, err = yaml.JSONToYAML(mutated); err != nil {
				return &exitError{code: exitFail, err: fmt.Errorf("%s: %w", name, err)}
			}
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(errOut, "mcpguard inject: %s: warning: %s\n", name, w)
		}
		if !first {
			io.WriteString(out, "---\n")
		}
		first = false
		out.Write(bytes.TrimLeft(text, "\n"))
		if !bytes.HasSuffix(text, []byte("\n")) {
			io.WriteString(out, "\n")
		}
	}
	if len(refused) > 0 {
		return &exitError{code: exitFail, err: errors.New(strings.Join(refused, "\n"))}
	}
	return nil
}

func isBlank(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			return false
		}
	}
	return true
}

// describe names a document for messages: Kind namespace/name.
func describe(obj []byte, n int) string {
	var m struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name, Namespace, GenerateName string
		} `json:"metadata"`
	}
	if json.Unmarshal(obj, &m) != nil || m.Kind == "" {
		return fmt.Sprintf("document %d", n)
	}
	name := m.Metadata.Name
	if name == "" {
		name = m.Metadata.GenerateName
	}
	if m.Metadata.Namespace != "" {
		name = m.Metadata.Namespace + "/" + name
	}
	return m.Kind + " " + name
}
