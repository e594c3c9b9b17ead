// Package kubetest holds the webhook's tests against a real kube-apiserver
// and etcd (controller-runtime's envtest, binaries from
// scripts/kube-test-bins.sh). It has no code of its own: everything is in its
// _test.go files, and one environment is shared by all of them (TestMain).
package kubetest
