package otlp

import (
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // the server accepts gzip
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
)

// receiver is a real OTLP receiver built from the collector's protobuf
// services: a grpc-go server or an HTTP handler, recording each request,
// its path and headers, and answering what the test scripts.
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	colmetricpb.UnimplementedMetricsServiceServer

	mu      sync.Mutex
	traces  []*coltracepb.ExportTraceServiceRequest
	metrics []*colmetricpb.ExportMetricsServiceRequest
	paths   []string
	headers []http.Header
	calls   int
	// encodings are the gRPC calls' grpc-encoding ("" for none), which
	// grpc-go keeps out of the metadata.
	encodings []string

	// script answers call i (from 0) with script[i]; calls beyond it
	// succeed.
	script []answer
}

// answer is what the receiver does with one call.
type answer struct {
	httpStatus int           // an HTTP status other than 200 (http only)
	retryAfter string        // Retry-After header (http only)
	grpcErr    error         // a gRPC status error (grpc only)
	rejected   int64         // a partial success: rejected items
	message    string        // and its message
	delay      time.Duration // wait before answering
}

func (rc *receiver) next() answer {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	i := rc.calls
	rc.calls++
	if i < len(rc.script) {
		return rc.script[i]
	}
	return answer{}
}

func (rc *receiver) record(path string, h http.Header, msg proto.Message) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.paths = append(rc.paths, path)
	rc.headers = append(rc.headers, h)
	switch m := msg.(type) {
	case *coltracepb.ExportTraceServiceRequest:
		rc.traces = append(rc.traces, m)
	case *colmetricpb.ExportMetricsServiceRequest:
		rc.metrics = append(rc.metrics, m)
	}
}

func (rc *receiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	a := rc.next()
	time.Sleep(a.delay)
	if a.grpcErr != nil {
		return nil, a.grpcErr
	}
	md, _ := metadata.FromIncomingContext(ctx)
	rc.record("Export", http.Header(md), req)
	resp := &coltracepb.ExportTraceServiceResponse{}
	if a.rejected != 0 || a.message != "" {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: a.rejected, ErrorMessage: a.message}
	}
	return resp, nil
}

// metricsService adapts the receiver to MetricsServiceServer, whose method
// has the trace service's name.
type metricsService struct{ *receiver }

func (m metricsService) Export(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	a := m.next()
	time.Sleep(a.delay)
	if a.grpcErr != nil {
		return nil, a.grpcErr
	}
	md, _ := metadata.FromIncomingContext(ctx)
	m.record("Export", http.Header(md), req)
	resp := &colmetricpb.ExportMetricsServiceResponse{}
	if a.rejected != 0 || a.message != "" {
		resp.PartialSuccess = &colmetricpb.ExportMetricsPartialSuccess{RejectedDataPoints: a.rejected, ErrorMessage: a.message}
	}
	return resp, nil
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := rc.next()
	time.Sleep(a.delay)
	if a.httpStatus != 0 {
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		http.Error(w, "scripted failure", a.httpStatus)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf", http.StatusUnsupportedMediaType)
		return
	}
	var req, resp proto.Message
	if strings.Contains(r.URL.Path, "metrics") {
		req = &colmetricpb.ExportMetricsServiceRequest{}
		ps := &colmetricpb.ExportMetricsServiceResponse{}
		if a.rejected != 0 || a.message != "" {
			ps.PartialSuccess = &colmetricpb.ExportMetricsPartialSuccess{RejectedDataPoints: a.rejected, ErrorMessage: a.message}
		}
		resp = ps
	} else {
		req = &coltracepb.ExportTraceServiceRequest{}
		ps := &coltracepb.ExportTraceServiceResponse{}
		if a.rejected != 0 || a.message != "" {
			ps.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: a.rejected, ErrorMessage: a.message}
		}
		resp = ps
	}
	if err := proto.Unmarshal(data, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := r.Header.Clone()
	rc.record(r.URL.Path, h, req)
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// startHTTP serves rc on loopback, with TLS when tlsConf is not nil, and
// returns its base URL.
func startHTTP(t *testing.T, rc *receiver, tlsConf *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rc, TLSConfig: tlsConf, ReadHeaderTimeout: 5 * time.Second}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
		go func() { _ = srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = srv.Serve(ln) }()
	}
	t.Cleanup(func() { _ = srv.Close() })
	return scheme + "://" + ln.Addr().String()
}

// startGRPC serves rc's trace and metrics services on loopback, with TLS
// when tlsConf is not nil, and returns host:port.
func startGRPC(t *testing.T, rc *receiver, tlsConf *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tlsConf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	opts = append(opts, grpc.StatsHandler(compressionRecorder{rc}))
	srv := grpc.NewServer(opts...)
	coltracepb.RegisterTraceServiceServer(srv, rc)
	colmetricpb.RegisterMetricsServiceServer(srv, metricsService{rc})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// testPKI is a CA with a server certificate for 127.0.0.1 and localhost
// and a client certificate, written as PEM files.
type testPKI struct {
	caFile, clientCert, clientKey string
	server                        tls.Certificate
	pool                          *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "otlp test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "otlp test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	}
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	srvCert, srvKey := issue(2, x509.ExtKeyUsageServerAuth)
	if p.server, err = tls.X509KeyPair(srvCert, srvKey); err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey := issue(3, x509.ExtKeyUsageClientAuth)
	write := func(name string, b []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	p.caFile = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	p.clientCert = write("client.pem", cliCert)
	p.clientKey = write("client-key.pem", cliKey)
	return p
}

// serverTLS is the receiver's TLS configuration; mutual requires the
// client certificate.
func (p *testPKI) serverTLS(mutual bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	if mutual {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = p.pool
	}
	return c
}

// compressionRecorder records each gRPC call's compression.
type compressionRecorder struct{ rc *receiver }

func (compressionRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (compressionRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (compressionRecorder) HandleConn(context.Context, stats.ConnStats) {}
func (c compressionRecorder) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		enc := h.Compression
		if enc == "identity" {
			enc = ""
		}
		c.rc.mu.Lock()
		c.rc.encodings = append(c.rc.encodings, enc)
		c.rc.mu.Unlock()
	}
}
