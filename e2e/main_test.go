package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/internal/kubenode"
)

const (
	imageRepo = "ghcr.io/mcpguard/mcpguard"
	peerImage = "localhost/mcpguard-e2e/peer:1"
)

var (
	imageOnce    sync.Once
	imageArchive string
	imageErr     error

	nodeOnce sync.Once
	theNode  *kubenode.Node
	nodeErr  error
	nodeMu   sync.Mutex
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The node is shared by the tests and stopped here; a signal stops it
	// too. (A test binary killed by -timeout cannot run this: the daemons
	// die with it (Pdeathsig) and the next Start cleans up the rest.)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "e2e: %v: stopping the node\n", s)
		stopNode()
		os.Exit(1)
	}()
	t0 := time.Now()
	code := m.Run()
	stopNode()
	if !testing.Short() {
		figure("e2e wall time (image build, node, tests, teardown)", time.Since(t0))
	}
	os.Exit(code)
}

func stopNode() {
	nodeMu.Lock()
	defer nodeMu.Unlock()
	if theNode != nil {
		t0 := time.Now()
		theNode.Stop()
		fmt.Fprintf(os.Stderr, "e2e: node stopped in %.1fs\n", time.Since(t0).Seconds())
		theNode = nil
	}
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("a real image and node: not under -short")
	}
}

// mcpguardImage builds the image from the shipped Dockerfile
// (scripts/image-build.sh) once and returns its docker-archive.
func mcpguardImage(t *testing.T) string {
	t.Helper()
	skipShort(t)
	imageOnce.Do(func() {
		t0 := time.Now()
		cmd := exec.Command("../scripts/image-build.sh")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			imageErr = fmt.Errorf("scripts/image-build.sh: %v\n%s", err, tail(stderr.String(), 40))
			return
		}
		imageArchive = strings.TrimSpace(string(out))
		figure("image build (scripts/image-build.sh)", time.Since(t0))
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageArchive
}

// startNode starts the shared node with both images imported.
func startNode(t *testing.T) *kubenode.Node {
	t.Helper()
	skipShort(t)
	archive := mcpguardImage(t)
	nodeOnce.Do(func() {
		// MCPGUARD_NODE_BIN: a directory with the node's binaries, instead
		// of the ones scripts/kube-test-bins.sh builds.
		bin := []byte(os.Getenv("MCPGUARD_NODE_BIN"))
		if len(bin) == 0 {
			var err error
			if bin, err = exec.Command("../scripts/kube-test-bins.sh").Output(); err != nil {
				nodeErr = fmt.Errorf("scripts/kube-test-bins.sh: %v", err)
				return
			}
		}
		peer, err := peerImageArchive(t.TempDir())
		if err != nil {
			nodeErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		nodeMu.Lock()
		defer nodeMu.Unlock()
		t0 := time.Now()
		n, err := kubenode.Start(ctx, kubenode.Options{Bin: strings.TrimSpace(string(bin)), Log: os.Stderr})
		if err != nil {
			nodeErr = err
			return
		}
		theNode = n
		figure("node start (kubenode.Start)", time.Since(t0))
		if !n.DNS() {
			nodeErr = fmt.Errorf("no coredns in %s: scripts/kube-test-bins.sh builds it beside the Kubernetes binaries", n.Bin)
			return
		}
		for _, a := range []string{archive, peer} {
			if err := n.ImportImage(ctx, a); err != nil {
				nodeErr = err
				return
			}
		}
	})
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
	return theNode
}

// peerImageArchive builds e2e/peer statically and makes the image every
// test pod runs: /peer, plus busybox and curl (with its libraries) for the
// agent container that scripts/demo-complete.sh drives with a shell and curl.
func peerImageArchive(dir string) (string, error) {
	bin := filepath.Join(dir, "peer")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./peer")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building e2e/peer: %v: %s", err, out)
	}
	files := []kubenode.File{
		{Path: "/peer", Mode: 0o755, Src: bin},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nagent:x:65532:65532:agent:/tmp:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nagent:x:65532:\n")},
		{Path: "/tmp", Mode: 0o777 | os.ModeSticky},
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static is not installed: %w", err)
	}
	files = append(files, kubenode.File{Path: "/bin/busybox", Mode: 0o755, Src: bb})
	for _, applet := range []string{"sh", "ls", "wc", "uname", "sleep", "cat", "printf", "tr", "nslookup"} {
		files = append(files, kubenode.File{Path: "/bin/" + applet, Link: "busybox"})
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		return "", fmt.Errorf("curl is not installed: %w", err)
	}
	files = append(files, kubenode.File{Path: "/bin/curl", Mode: 0o755, Src: curl})
	libs, err := exec.Command("ldd", curl).Output()
	if err != nil {
		return "", fmt.Errorf("ldd %s: %w", curl, err)
	}
	for _, l := range strings.Split(string(libs), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				real, err := filepath.EvalSymlinks(f)
				if err != nil {
					return "", err
				}
				files = append(files, kubenode.File{Path: f, Mode: 0o755, Src: real})
			}
		}
	}
	archive := filepath.Join(dir, "peer.tar")
	return archive, kubenode.WriteImage(archive, peerImage, kubenode.ImageConfig{
		Entrypoint: []string{"/peer"}, User: "65532:65532", Env: []string{"PATH=/bin"},
	}, files)
}

// figures are the measurements the run prints at the end (README's
// "Deployed on a real node").
var figures struct {
	sync.Mutex
	lines []string
}

func figure(what string, d time.Duration) {
	figureText(what, fmt.Sprintf("%.1fs", d.Seconds()))
}

func figureText(what, value string) {
	figures.Lock()
	defer figures.Unlock()
	line := fmt.Sprintf("e2e figure: %-48s %s", what, value)
	figures.lines = append(figures.lines, line)
	fmt.Fprintln(os.Stderr, line)
}

func tail(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
