package servingcert

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestWithOwner(t *testing.T) {
	mwc := func(uid string) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration", Name: "mcpguard", UID: types.UID(uid)}
	}
	other := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "mcpguard", UID: "d"}
	for _, tc := range []struct {
		name    string
		refs    []metav1.OwnerReference
		want    []metav1.OwnerReference
		changed bool
	}{
		{"no owner yet (an earlier version's secret)", nil, []metav1.OwnerReference{mwc("2")}, true},
		{"already owned", []metav1.OwnerReference{mwc("2")}, []metav1.OwnerReference{mwc("2")}, false},
		{"owner deleted and re-created: the old uid goes", []metav1.OwnerReference{mwc("1")}, []metav1.OwnerReference{mwc("2")}, true},
		{"another owner stays", []metav1.OwnerReference{other, mwc("1")}, []metav1.OwnerReference{other, mwc("2")}, true},
		{"an older apiVersion of the same group is the same owner", []metav1.OwnerReference{{APIVersion: "admissionregistration.k8s.io/v1beta1", Kind: "MutatingWebhookConfiguration", Name: "mcpguard", UID: "1"}}, []metav1.OwnerReference{mwc("2")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := withOwner(tc.refs, mwc("2"))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || changed != tc.changed {
				t.Errorf("withOwner(%v) = %v, %v; want %v, %v", tc.refs, got, changed, tc.want, tc.changed)
			}
		})
	}
}
