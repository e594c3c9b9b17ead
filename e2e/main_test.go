package e2e

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const imageRepo = "ghcr.io/mcpguard/mcpguard"

var (
	imageOnce    sync.Once
	imageArchive string
	imageErr     error
)

func TestMain(m *testing.M) {
	flag.Parse()
	t0 := time.Now()
	code := m.Run()
	if !testing.Short() {
		figure("e2e wall time (image build, node, tests, teardown)", time.Since(t0))
	}
	os.Exit(code)
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
