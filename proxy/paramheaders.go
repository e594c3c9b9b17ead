package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// checkParamHeaders holds a 2026-07-28 tools/call's Mcp-Param-* headers
// (SEP-2243) to the tool's inputSchema and to the body, and puts the checked
// ones in out (issue #14):
//   - each is sent once: of a repeated one a server checks the first value
//     and may act on another;
//   - each is bound by an x-mcp-header annotation of the schema: an unbound
//     one would reach the gateway unchecked;
//   - each agrees with the body's value, and an argument the schema binds
//     has its header (mcp.ValidateParamHeadersLookup).
//
// The schema is the tool's definition from the last tools/list the proxy
// relayed. When there is none and the agent sent Mcp-Param-* headers, the
// proxy lists the gateway's tools itself; headers it still cannot bind are
// refused.
func (p *Proxy) checkParamHeaders(r *http.Request, m *jsonrpc.Message, out http.Header) error {
	var sent map[string]string // nil until the first: most calls send none
	for k, v := range r.Header {
		if !strings.HasPrefix(k, "Mcp-Param-") {
			continue
		}
		if len(v) != 1 {
			return fmt.Errorf("header %s is sent %d times: send each Mcp-Param-* header once", k, len(v))
		}
		if sent == nil {
			sent = map[string]string{}
		}
		sent[k] = v[0]
	}
	name, _, _ := m.ParamString("name")
	var b *paramBindings
	if t, known := p.tools.Load(name); known {
		b = t.(*listedTool).bindings()
	} else {
		if len(sent) == 0 {
			return nil // nothing to bind; the gateway holds the call to its schema
		}
		listed, err := p.listTool(r, name)
		if err != nil {
			return fmt.Errorf("Mcp-Param-* headers cannot be checked: tool %q has not been listed and listing the gateway's tools failed: %v", name, err)
		}
		if listed == nil {
			return fmt.Errorf("Mcp-Param-* headers cannot be bound: the gateway lists no tool %q", name)
		}
		b = readBindings(listed)
	}
	if b.err != nil {
		if len(sent) == 0 {
			return nil
		}
		return fmt.Errorf("Mcp-Param-* headers cannot be bound: the definition of tool %q cannot be read: %v", name, b.err)
	}
	for k := range sent {
		if !b.bound[k] {
			return fmt.Errorf("header %s is bound by no x-mcp-header of tool %q's inputSchema: send only the headers the schema names", k, name)
		}
	}
	// A schema that binds nothing needs no look at the arguments
	// (mcp.ValidateParamHeadersLookup returns nil for it at once).
	if len(b.bound) > 0 {
		if err := mcp.ValidateParamHeadersLookup(func(h string) (string, bool) {
			v, ok := sent[http.CanonicalHeaderKey(h)]
			return v, ok
		}, b.tool, m.Params); err != nil {
			return err
		}
	}
	for k, v := range sent {
		out.Set(k, v)
	}
	return nil
}

// paramBindings is what checkParamHeaders needs of a tool's definition,
// read once per listed definition rather than per call: decoding a
// definition into mcp.Tool and its schema's bindings cost more than the
// rest of a small call's screening.
type paramBindings struct {
	tool  *mcp.Tool
	err   error           // the definition cannot be read as a tool
	bound map[string]bool // the Mcp-Param-* headers its x-mcp-header annotations bind, canonical
}

func readBindings(def json.RawMessage) *paramBindings {
	b := &paramBindings{tool: new(mcp.Tool), bound: map[string]bool{}}
	if b.err = json.Unmarshal(def, b.tool); b.err != nil {
		return b
	}
	for _, pb := range mcp.ExtractParamHeaderBindings(b.tool) {
		b.bound[http.CanonicalHeaderKey(pb.HeaderName())] = true
	}
	return b
}

// maxListPages bounds the tools/list pages listTool reads.
const maxListPages = 64

// listTool asks the gateway for its tools, statelessly, page by page, and
// returns the definition of the named one, or nil when it lists none by
// that name.
func (p *Proxy) listTool(r *http.Request, name string) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.CallTimeout)
	defer cancel()
	cursor := ""
	for range maxListPages {
		params := map[string]any{"_meta": map[string]any{
			"io.modelcontextprotocol/protocolVersion":    versionStateless,
			"io.modelcontextprotocol/clientCapabilities": map[string]any{},
		}}
		if cursor != "" {
			params["cursor"] = cursor
		}
		raw, err := json.Marshal(params)
		if err != nil {
			return nil, err
		}
		id := jsonrpc.StringID("mcpguard-tools-list-" + newSessionID()[:8])
		body, err := jsonrpc.Encode(&jsonrpc.Message{ID: id, Method: "tools/list", Params: raw})
		if err != nil {
			return nil, err
		}
		res, err := p.up.do(ctx, upstreamCall{method: http.MethodPost, body: body, protocolVersion: versionStateless,
			mcpHeaders: http.Header{"Mcp-Method": {"tools/list"}}, from: r})
		if err != nil {
			return nil, err
		}
		resp, cerr := p.readOneResponse(res, id)
		res.Body.Close()
		switch {
		case cerr != nil:
			return nil, cerr
		case resp.Error != nil:
			return nil, fmt.Errorf("the gateway answered error %d: %s", resp.Error.Code, resp.Error.Message)
		}
		tools, err := jsonrpc.Lookup(resp.Result, "tools")
		if err != nil {
			return nil, fmt.Errorf("the gateway's tools/list result: %v", err)
		}
		defs, err := jsonrpc.Elements(tools)
		if err != nil {
			return nil, fmt.Errorf("the gateway's tools/list result: %v", err)
		}
		for _, def := range defs {
			if n, ok, _ := jsonrpc.LookupString(def, "name"); ok && n == name {
				return def, nil
			}
		}
		if cursor, _, _ = jsonrpc.LookupString(resp.Result, "nextCursor"); cursor == "" {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("the tool list runs past %d pages", maxListPages)
}
