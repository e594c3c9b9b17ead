// Command kube-node starts or stops the real single-node Kubernetes of
// package kubenode, for a person at a terminal (scripts/kube-node.sh); the
// e2e tests use the package directly.
//
//	kube-node up    BIN_DIR    start (after tearing down any earlier node), leave it running
//	kube-node down  BIN_DIR    stop it; safe to run twice
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"mcpguard.dev/mcpguard/internal/kubenode"
)

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: kube-node up|down BIN_DIR")
		os.Exit(2)
	}
	o := kubenode.Options{Bin: os.Args[2], Log: os.Stderr, Dir: os.Getenv("MCPGUARD_NODE_DIR")}
	if os.Args[1] == "down" {
		kubenode.Down(o)
		fmt.Fprintln(os.Stderr, "node down")
		return
	}
	o.Detach = true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := kubenode.Start(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("KUBECONFIG=%s\n", n.Kubeconfig())
}
