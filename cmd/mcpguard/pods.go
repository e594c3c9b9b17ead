//go:build !sidecar

package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"mcpguard.dev/mcpguard/inject"
)

func newPodsCmd() *cobra.Command {
	var (
		outdated             bool
		namespace            string
		webhookNS, webhookDp string
	)
	cmd := &cobra.Command{
		Use:   "pods [--outdated] [-n NAMESPACE]",
		Short: "List injected pods and whether they run the installed webhook's sidecar settings",
		Long: `List the pods mcpguard injected (those with the ` + inject.AnnotationStatus + ` annotation),
in every namespace or in -n NAMESPACE, with the mcpguard version and settings
digest recorded when each was injected. A pod is outdated when its settings
digest differs from the installed webhook's (read from its Deployment, as
` + "`inject --from-cluster`" + ` does): another image, gateway, audience, resources or any
other sidecar setting. --outdated lists only those; restart their workloads
to re-inject them (docs/operations.md, "Upgrades").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, _, err := kubeClientNamespace()
			if err != nil {
				return &exitError{code: exitFail, err: err}
			}
			ctx := cmd.Context()
			f, err := injectFlagsFromCluster(ctx, client, webhookNS, webhookDp, pflag.NewFlagSet("none", pflag.ContinueOnError))
			if err != nil {
				return &exitError{code: exitFail, err: err}
			}
			cfg, err := f.config()
			if err != nil {
				return &exitError{code: exitFail, err: fmt.Errorf("the installed webhook's settings: %w", err)}
			}
			current := cfg.Settings()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAMESPACE\tPOD\tOWNER\tVERSION\tSETTINGS\tSTATE")
			opts := metav1.ListOptions{Limit: 500}
			for {
				pods, err := client.CoreV1().Pods(namespace).List(ctx, opts)
				if err != nil {
					return &exitError{code: exitFail, err: fmt.Errorf("listing pods: %w", err)}
				}
				for i := range pods.Items {
					p := &pods.Items[i]
					raw, ok := p.Annotations[inject.AnnotationStatus]
					if !ok {
						continue
					}
					var st inject.Status
					state := "current"
					switch {
					case json.Unmarshal([]byte(raw), &st) != nil:
						state = "outdated (unreadable status)"
					case st.Settings == "":
						state = "outdated (injected before settings were recorded)"
					case st.Settings != current:
						state = "outdated (installed: " + current + ")"
					}
					if outdated && state == "current" {
						continue
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, owner(p), orDash(st.Version), orDash(st.Settings), state)
				}
				if pods.Continue == "" {
					break
				}
				opts.Continue = pods.Continue
			}
			return w.Flush()
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&outdated, "outdated", false, "list only pods injected with other settings than the installed webhook's")
	fs.StringVarP(&namespace, "namespace", "n", "", "only this namespace (default: all)")
	fs.StringVar(&webhookNS, "webhook-namespace", defaultWebhookNamespace, "namespace of the installed webhook")
	fs.StringVar(&webhookDp, "webhook-deployment", defaultWebhookDeployment, "name of the installed webhook's Deployment")
	return cmd
}

// owner names the pod's controller, e.g. ReplicaSet/agent-5d8f7c; "-" for
// a bare pod.
func owner(p *corev1.Pod) string {
	if ref := metav1.GetControllerOf(p); ref != nil {
		return ref.Kind + "/" + ref.Name
	}
	return "-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
