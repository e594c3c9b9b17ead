//go:build !sidecar

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"mcpguard.dev/mcpguard/inject"
)

// The installed webhook `inject --from-cluster` reads by default: what
// manifests/ and charts/mcpguard install.
const (
	defaultWebhookNamespace  = "mcpguard-system"
	defaultWebhookDeployment = "mcpguard-webhook"
	webhookContainer         = "webhook"
)

func newInjectCmd() *cobra.Command {
	var (
		f                    injectFlags
		file, namespace      string
		onlyAnnotated, all   bool
		fromCluster          bool
		webhookNS, webhookDp string
	)
	cmd := &cobra.Command{
		Annotations: map[string]string{settingsPrefix: webhookEnvPrefix},
		Use:         "inject -f FILE|- (--from-cluster | --image IMAGE --upstream URL --audience AUD) [--all]",
		Short:       "Print manifests with the mcpguard sidecar injected, as the webhook would",
		Long: `Read Kubernetes manifests (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job, CronJob; several documents separated by ---; - for stdin) and print them
with the sidecar injected by the same Mutate the webhook runs, for GitOps and
for review. Other kinds and pods left alone are printed as they came.

Only the pods the webhook would inject are injected: pods annotated
` + inject.AnnotationInject + `: "true", and pods without that annotation whose namespace is
labelled ` + inject.LabelNamespaceInject + `=` + inject.LabelNamespaceInjectEnabled + ` (by a Namespace document in the input, or in
the cluster with --from-cluster); never pods annotated "false" nor pods in
mcpguard-system, kube-*, openshift and openshift-*. Documents without a
namespace are in -n NAMESPACE (default "default"; with --from-cluster, the
kubeconfig's). --all injects every pod but those annotated "false";
--only-annotated ignores namespace labels.

--from-cluster reads the image, gateway URL, audience and every other sidecar
setting from the installed webhook's Deployment (` + defaultWebhookNamespace + `/` + defaultWebhookDeployment + `;
$KUBECONFIG or the in-cluster config), so nothing is typed twice; flags given
here win over it.

A pod the webhook would refuse is reported on stderr and the command exits 1.
Every flag can also be set as ` + webhookEnvPrefix + `<FLAG>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all && onlyAnnotated {
				return &exitError{code: exitUsage, err: errors.New("--all and --only-annotated contradict each other: choose one")}
			}
			opts := inject.ManifestOptions{
				Namespace: namespace,
				Warn:      func(doc, w string) { fmt.Fprintf(cmd.ErrOrStderr(), "mcpguard inject: %s: warning: %s\n", doc, w) },
			}
			switch {
			case all:
				opts.Select = inject.SelectAll
			case onlyAnnotated:
				opts.Select = inject.SelectAnnotated
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
			if fromCluster {
				client, ctxNamespace, err := kubeClientNamespace()
				if err != nil {
					return &exitError{code: exitFail, err: err}
				}
				if f, err = injectFlagsFromCluster(cmd.Context(), client, webhookNS, webhookDp, cmd.Flags()); err != nil {
					return &exitError{code: exitFail, err: err}
				}
				if opts.Namespace == "" {
					opts.Namespace = ctxNamespace
				}
				opts.NamespaceLabels = clusterNamespaceLabels(cmd.Context(), client)
			}
			cfg, err := f.config()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			err = inject.Manifests(in, cmd.OutOrStdout(), &cfg, opts)
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
	fs := cmd.Flags()
	fs.StringVarP(&file, "filename", "f", "", "manifest file, or - for stdin")
	fs.StringVarP(&namespace, "namespace", "n", "", `namespace of documents without one (default "default", or the kubeconfig's with --from-cluster)`)
	fs.BoolVar(&all, "all", false, `inject every pod, as if its namespace had opted in (pods annotated "false" excepted)`)
	fs.BoolVar(&onlyAnnotated, "only-annotated", false, `inject only pods annotated `+inject.AnnotationInject+`, whatever their namespace's labels`)
	fs.BoolVar(&fromCluster, "from-cluster", false, "read the sidecar settings from the installed webhook's Deployment, and namespace labels from the cluster")
	fs.StringVar(&webhookNS, "webhook-namespace", defaultWebhookNamespace, "namespace of the installed webhook (--from-cluster)")
	fs.StringVar(&webhookDp, "webhook-deployment", defaultWebhookDeployment, "name of the installed webhook's Deployment (--from-cluster)")
	return cmd
}

// injectFlagsFromCluster returns the inject flags of the installed webhook:
// its container's arguments (with $(VAR) references expanded from its env,
// as the kubelet does) and its MCPGUARD_WEBHOOK_* variables, parsed by the
// same flag set `mcpguard webhook` uses. Flags the user set in local (on
// the command line or in the environment) win.
func injectFlagsFromCluster(ctx context.Context, client kubernetes.Interface, ns, name string, local *pflag.FlagSet) (injectFlags, error) {
	dp, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return injectFlags{}, fmt.Errorf("--from-cluster: reading the webhook's Deployment %s/%s: %w", ns, name, err)
	}
	var c *corev1.Container
	for i := range dp.Spec.Template.Spec.Containers {
		if dp.Spec.Template.Spec.Containers[i].Name == webhookContainer {
			c = &dp.Spec.Template.Spec.Containers[i]
		}
	}
	if c == nil {
		return injectFlags{}, fmt.Errorf("--from-cluster: Deployment %s/%s has no container %q", ns, name, webhookContainer)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	args := make([]string, 0, len(c.Args))
	for _, a := range c.Args {
		args = append(args, expandVars(a, env))
	}
	if len(args) == 0 || args[0] != "webhook" {
		return injectFlags{}, fmt.Errorf("--from-cluster: container %q of %s/%s does not run `mcpguard webhook` (args %q)", webhookContainer, ns, name, c.Args)
	}
	var wf webhookFlags
	fs := pflag.NewFlagSet("webhook", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	wf.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return injectFlags{}, fmt.Errorf("--from-cluster: the arguments of %s/%s: %w", ns, name, err)
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := settingsFromEnv(fs, webhookEnvPrefix, lookup, func(f *pflag.Flag) bool { return f.Changed }); err != nil {
		return injectFlags{}, fmt.Errorf("--from-cluster: the environment of %s/%s: %w", ns, name, err)
	}
	var errs []error
	local.Visit(func(l *pflag.Flag) {
		cf := fs.Lookup(l.Name)
		if cf == nil {
			return
		}
		if sv, ok := l.Value.(pflag.SliceValue); ok {
			errs = append(errs, cf.Value.(pflag.SliceValue).Replace(sv.GetSlice()))
			return
		}
		errs = append(errs, cf.Value.Set(l.Value.String()))
	})
	return wf.inject, errors.Join(errs...)
}

// expandVars expands $(NAME) references to the given variables as the
// kubelet expands a container's args: $$ is a literal $, and a reference to
// an unknown variable stays as written.
func expandVars(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := vars[name]; ok {
					b.WriteString(v)
				} else {
					b.WriteString(s[i : i+3+end])
				}
				i += 2 + end
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// clusterNamespaceLabels reads namespaces' labels, once each; a namespace
// that does not exist yet has none.
func clusterNamespaceLabels(ctx context.Context, client kubernetes.Interface) func(string) (map[string]string, error) {
	seen := map[string]map[string]string{}
	return func(name string) (map[string]string, error) {
		if l, ok := seen[name]; ok {
			return l, nil
		}
		ns, err := client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			seen[name] = nil
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		seen[name] = ns.Labels
		return ns.Labels, nil
	}
}
