// Package e2e is mcpguard's end-to-end suite: the image built from the
// shipped Dockerfile with podman (scripts/image-build.sh) and checked
// (image_test.go). It needs root and podman; scripts/test.sh runs it as its
// own step. Skipped only under -short.
package e2e
