package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"mcpguard.dev/mcpguard/inject"
)

func reportPercentiles(b *testing.B, ds []time.Duration, prefix string) {
	b.Helper()
	if len(ds) == 0 {
		b.Fatalf("no %s samples", prefix)
	}
	slices.Sort(ds)
	at := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Nanoseconds()) / 1e6 }
	b.ReportMetric(at(0.50), prefix+"p50-ms")
	b.ReportMetric(at(0.99), prefix+"p99-ms")
}

// BenchmarkAdmission creates dry-run pods through the real API server, one
// at a time: "webhook" pods are annotated and injected, "no-webhook" pods are
// not (matchConditions keep them from the webhook), so the difference is what
// the webhook adds to an admission. webhook-p50/p99 are the same reviews as
// timed inside the webhook's handler.
func BenchmarkAdmission(b *testing.B) {
	ns := namespace(b, nil)
	for _, tc := range []struct {
		name        string
		annotations map[string]string
	}{
		{"webhook", map[string]string{inject.AnnotationInject: "true"}},
		{"no-webhook", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			hook.takeLatencies()
			ds := make([]time.Duration, 0, 4096)
			for i := 0; b.Loop(); i++ {
				p := newPod(fmt.Sprintf("bench-%d", i), tc.annotations)
				start := time.Now()
				got, err := client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				ds = append(ds, time.Since(start))
				if err != nil {
					b.Fatal(statusMessage(err))
				}
				if hasSidecar(got) != (tc.annotations != nil) {
					b.Fatal("injection did not happen as expected")
				}
			}
			reportPercentiles(b, ds, "apiserver-")
			if tc.annotations != nil {
				reportPercentiles(b, hook.takeLatencies(), "webhook-")
			}
		})
	}
}

// BenchmarkWebhookProcess builds the real binary, runs `mcpguard webhook`
// with mounted certificates and sends it AdmissionReviews over HTTPS from 8
// connections, then reports the latency the client saw and the process's
// resident memory: VmRSS once serving and idle, VmRSS after the load, VmHWM
// its peak.
func BenchmarkWebhookProcess(b *testing.B) {
	dir := b.TempDir()
	bin := binary(b)
	ca := newTestCA(&testing.T{})
	certDir := filepath.Join(dir, "certs")
	os.Mkdir(certDir, 0o755)
	ca.writeLeaf(&testing.T{}, certDir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "webhook", "--listen", addr,
		"--tls-cert-file", filepath.Join(certDir, "tls.crt"), "--tls-key-file", filepath.Join(certDir, "tls.key"),
		"--image", "registry.example/mcpguard:v0.1.0", "--upstream", "http://gw:8080/mcp", "--audience", "mcp-gateway", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.certPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 8, ForceAttemptHTTP2: true}}
	url := "https://" + addr + inject.PathMutate
	for deadline := time.Now().Add(10 * time.Second); ; {
		if r, err := hc.Get("https://" + addr + inject.PathHealthz); err == nil {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("webhook did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	raw, _ := json.Marshal(newPod("agent", map[string]string{inject.AnnotationInject: "true"}))
	review, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "agents",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	})
	idle, _ := procMemory(b, cmd.Process.Pid)
	var mu sync.Mutex
	var ds []time.Duration
	b.ResetTimer()
	b.SetParallelism(4) // 4 × GOMAXPROCS(2) = 8 goroutines
	b.RunParallel(func(pb *testing.PB) {
		var local []time.Duration
		for pb.Next() {
			start := time.Now()
			resp, err := hc.Post(url, "application/json", bytes.NewReader(review))
			if err != nil {
				b.Error(err)
				return
			}
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			resp.Body.Close()
			local = append(local, time.Since(start))
			if resp.StatusCode != 200 || !bytes.Contains(buf.Bytes(), []byte(`"patch"`)) {
				b.Errorf("%d %s", resp.StatusCode, buf.Bytes())
				return
			}
		}
		mu.Lock()
		ds = append(ds, local...)
		mu.Unlock()
	})
	b.StopTimer()
	reportPercentiles(b, ds, "https-")
	rss, hwm := procMemory(b, cmd.Process.Pid)
	b.ReportMetric(idle, "idle-rss-MiB")
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(hwm, "peak-rss-MiB")
}

// procMemory reads VmRSS and VmHWM of pid in MiB.
func procMemory(b *testing.B, pid int) (rss, hwm float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[0], 64)
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "VmHWM":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}
