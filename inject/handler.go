package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
)

// Paths the webhook serves. The MutatingWebhookConfiguration sends
// annotation opt-ins to PathMutate and pods of opted-in namespaces to
// PathMutateNamespace (docs/webhook.md).
const (
	PathMutate          = "/mutate"
	PathMutateNamespace = "/mutate/namespace"
	PathHealthz         = "/healthz"
)

// MaxRequestBytes bounds an AdmissionReview body. The API server refuses
// objects over 3 MiB (its default --max-request-bytes for a resource), and the
// review adds an envelope around one object on CREATE.
const MaxRequestBytes = 4 << 20

// Webhook answers AdmissionReview v1 requests with Mutate's verdict. It is
// safe for concurrent use; it has no state beyond its config.
type Webhook struct {
	cfg        Config
	log        *slog.Logger
	namespaces NamespaceLookup
	reviewers  map[string]Reviewer
}

// Reviewer answers the admission requests of a path the Webhook serves
// besides its own, e.g. the validation of policy ConfigMaps
// (inject/policycheck). The Webhook decodes and encodes the reviews; Review
// must be safe for concurrent use and must answer with req.UID.
type Reviewer interface {
	Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse
}

// Handle makes the webhook answer the reviews POSTed to path with r. Call
// it before serving.
func (wh *Webhook) Handle(path string, r Reviewer) *Webhook {
	if wh.reviewers == nil {
		wh.reviewers = map[string]Reviewer{}
	}
	wh.reviewers[path] = r
	return wh
}

// NamespaceLookup returns the annotations of the named namespace. The
// webhook calls it for every pod it injects; an error refuses the pod.
type NamespaceLookup func(ctx context.Context, name string) (map[string]string, error)

// WithNamespaces makes the webhook read namespace annotations as defaults
// for their pods (Target.NamespaceAnnotations). Call it before serving.
func (wh *Webhook) WithNamespaces(lookup NamespaceLookup) *Webhook {
	wh.namespaces = lookup
	return wh
}

var _ http.Handler = (*Webhook)(nil)

// NewWebhook applies cfg's defaults, validates it and returns the webhook.
// A nil log discards logs.
func NewWebhook(cfg Config, log *slog.Logger) (*Webhook, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Webhook{cfg: cfg, log: log}, nil
}

// Config returns the webhook's defaulted config.
func (wh *Webhook) Config() Config { return wh.cfg }

// ServeHTTP serves PathMutate, PathMutateNamespace and PathHealthz. A body
// that is not an AdmissionReview v1 gets a 4xx, which the API server treats
// as a webhook failure: with failurePolicy Fail, the pod is refused.
func (wh *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var scope Scope
	reviewer, extra := wh.reviewers[r.URL.Path]
	switch {
	case extra:
	case r.URL.Path == PathMutate:
		scope = ScopePod
	case r.URL.Path == PathMutateNamespace:
		scope = ScopeNamespace
	case r.URL.Path == PathHealthz:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
		return
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, fmt.Sprintf("method %q not allowed; the API server POSTs AdmissionReviews", r.Method), http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, fmt.Sprintf("content type %q is not application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			http.Error(w, fmt.Sprintf("AdmissionReview larger than %d bytes", MaxRequestBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	review, err := decodeReview(body)
	if err != nil {
		wh.log.Warn("bad admission review", "path", r.URL.Path, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var resp *admissionv1.AdmissionResponse
	if extra {
		resp = reviewer.Review(r.Context(), review.Request)
	} else {
		resp = wh.Review(r.Context(), review.Request, scope)
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		http.Error(w, "encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// decodeReview decodes an AdmissionReview v1 case-sensitively, refusing
// duplicate keys (the encoding/json defaults would let "UID" and "uid"
// disagree with what the API server meant).
func decodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	strict, err := sigsjson.UnmarshalStrict(body, &review, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("decoding AdmissionReview: %w", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("decoding AdmissionReview: %w", errors.Join(strict...))
	}
	if gv := admissionv1.SchemeGroupVersion.String(); review.APIVersion != gv || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("got apiVersion %q kind %q; want %q %q (set admissionReviewVersions: [v1])", review.APIVersion, review.Kind, gv, "AdmissionReview")
	}
	if review.Request == nil {
		return nil, errors.New("AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("AdmissionReview request has no uid")
	}
	return &review, nil
}

var podKind = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Pod"}

// Review returns the response to one admission request.
func (wh *Webhook) Review(ctx context.Context, req *admissionv1.AdmissionRequest, scope Scope) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	log := wh.log.With("uid", req.UID, "namespace", req.Namespace, "name", req.Name, "dryRun", req.DryRun != nil && *req.DryRun)
	deny := func(code int32, msg string) *admissionv1.AdmissionResponse {
		reason := map[int32]metav1.StatusReason{
			http.StatusBadRequest:          metav1.StatusReasonBadRequest,
			http.StatusForbidden:           metav1.StatusReasonForbidden,
			http.StatusInternalServerError: metav1.StatusReasonInternalError,
		}[code]
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}
		return resp
	}
	if req.Kind != podKind || req.Resource.Resource != "pods" || req.SubResource != "" && req.SubResource != "ephemeralcontainers" {
		log.Warn("skipped", "reason", SkipNotPod, "kind", req.Kind.String(), "resource", req.Resource.String(), "subResource", req.SubResource)
		return resp
	}
	if req.SubResource == "ephemeralcontainers" {
		pod, err := decodePod(req.Object.Raw)
		if err != nil {
			return deny(http.StatusBadRequest, err.Error())
		}
		if err := CheckEphemeral(pod, &wh.cfg); err != nil {
			log.Info("refused", "subResource", req.SubResource, "err", err)
			return deny(http.StatusForbidden, err.Error())
		}
		return resp
	}
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		old, err := decodePod(req.OldObject.Raw)
		if err != nil {
			return deny(http.StatusBadRequest, "old object: "+err.Error())
		}
		pod, err := decodePod(req.Object.Raw)
		if err != nil {
			return deny(http.StatusBadRequest, err.Error())
		}
		if err := CheckUpdate(old, pod); err != nil {
			log.Info("refused", "operation", req.Operation, "err", err)
			return deny(http.StatusForbidden, err.Error())
		}
		return resp
	}
	if req.Operation != admissionv1.Create {
		log.Debug("skipped", "reason", SkipNotCreate, "operation", req.Operation)
		return resp
	}
	pod, err := decodePod(req.Object.Raw)
	if err != nil {
		log.Warn("refused", "err", err)
		return deny(http.StatusBadRequest, err.Error())
	}
	if req.Name == "" {
		log = log.With("generateName", pod.GenerateName)
	}
	target := Target{Scope: scope}
	if wh.namespaces != nil && wantsInjection(pod, scope) {
		if target.NamespaceAnnotations, err = wh.namespaces(ctx, req.Namespace); err != nil {
			log.Error("reading namespace", "err", err)
			return deny(http.StatusInternalServerError, fmt.Sprintf("reading namespace %q for its mcpguard defaults: %v", req.Namespace, err))
		}
	}
	res, err := Mutate(pod, &wh.cfg, target)
	if r, ok := errors.AsType[*Refusal](err); ok {
		log.Info("refused", "reasons", r.Reasons)
		return deny(http.StatusForbidden, r.Error())
	}
	if err != nil {
		log.Error("mutate failed", "err", err)
		return deny(http.StatusInternalServerError, err.Error())
	}
	resp.Warnings = res.Warnings
	if res.Skip != "" {
		log.Debug("skipped", "reason", res.Skip)
		return resp
	}
	ops, err := podPatch(req.Object.Raw, pod, res.Pod, "")
	if err != nil {
		log.Error("patch failed", "err", err)
		return deny(http.StatusInternalServerError, err.Error())
	}
	if len(ops) == 0 {
		log.Debug("already injected")
		return resp
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return deny(http.StatusInternalServerError, "encoding patch: "+err.Error())
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	log.Info("injected", "operations", len(ops))
	return resp
}

// decodePod decodes a pod the way decodeReview decodes the review. Unknown
// fields are kept out of the typed pod but stay in the raw bytes the patch
// applies to.
func decodePod(raw []byte) (*corev1.Pod, error) {
	if len(raw) == 0 {
		return nil, errors.New("admission request has no object")
	}
	var pod corev1.Pod
	strict, err := sigsjson.UnmarshalStrict(raw, &pod, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("decoding pod: %w", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("decoding pod: %w", errors.Join(strict...))
	}
	return &pod, nil
}
