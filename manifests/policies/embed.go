// Package policies embeds the policies mcpguard ships, so the demo and
// tests use the same bytes a platform team applies.
package policies

import _ "embed"

// ApprovedAPIs is approved-apis.yaml: fetch_url limited to four approved
// HTTPS APIs, read_file confined to /workspace, run_command denied,
// get_time allowed, every other tool denied.
//
//go:embed approved-apis.yaml
var ApprovedAPIs []byte
