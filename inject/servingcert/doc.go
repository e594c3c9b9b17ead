// Package servingcert keeps the webhook's TLS serving certificate with
// certmagic, in one of two modes:
//
//   - FromFiles serves a key pair mounted from a Secret (OpenShift's
//     service-ca, cert-manager) and reloads it when the files change, so a
//     rotation needs no restart.
//   - InCluster issues the certificate from mcpguard's own CA (a certmagic
//     Issuer) whose key lives in a Secret, keeps certmagic's assets in another
//     Secret through a certmagic Storage (so replicas share one certificate and
//     lock renewals against each other), and keeps the CA bundle of the
//     MutatingWebhookConfiguration up to date. Both Secrets are owned by
//     that configuration, so the garbage collector deletes them on
//     uninstall (owner.go), and every replica serves the CA the Secret
//     holds.
//
// Either way, TLSConfig's GetCertificate reads certmagic's in-memory cache:
// a handshake after a rotation gets the new certificate, one before it the
// old, and the CA stays the same, so admissions in flight never fail.
package servingcert
