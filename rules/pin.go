package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"mcpguard.dev/mcpguard/internal/jsonschema"
)

// PinHash returns the pin of a tool definition (a tools/list entry):
// "sha256:" and the hex SHA-256 of the canonical JSON of the whole
// definition — name, title, description, inputSchema, outputSchema,
// annotations, _meta and any other field — so an instruction planted in any
// of them changes the pin. Canonical JSON has sorted keys, no insignificant
// space, no HTML escaping, and numbers as written.
func PinHash(definition []byte) (string, error) {
	return pinHash(definition, nil)
}

// legacyPinHash is the pin mcpguard wrote before every field counted: of
// name, description and inputSchema only. A pin equal to it is refused with
// a request to re-pin, never accepted.
func legacyPinHash(definition []byte) (string, error) {
	return pinHash(definition, []string{"name", "description", "inputSchema"})
}

func pinHash(definition []byte, fields []string) (string, error) {
	v, err := decodeJSON(definition)
	if err != nil {
		return "", fmt.Errorf("tool definition is not valid JSON: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", fmt.Errorf("tool definition is %s, not an object", jsonType(v))
	}
	pinned := obj
	if fields != nil {
		pinned = map[string]any{}
		for _, k := range fields {
			if x, ok := obj[k]; ok {
				pinned[k] = x
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(pinned); err != nil {
		return "", fmt.Errorf("tool definition cannot be encoded: %w", err)
	}
	sum := sha256.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// pinSet is the compiled spec.pins.
type pinSet struct {
	enabled       bool
	block         bool // onChange: block
	unpinnedAllow bool
	tools         map[string]string
}

func compilePins(el *errorList, fp string, p *Pins, out *pinSet) {
	switch p.OnChange {
	case "", "hide":
	case "block":
		out.block = true
	default:
		el.add(fp+".onChange", "is %q; write \"hide\" or \"block\"", p.OnChange)
	}
	switch p.Unpinned {
	case "", "hide":
	case "allow":
		out.unpinnedAllow = true
	default:
		el.add(fp+".unpinned", "is %q; write \"hide\" or \"allow\"", p.Unpinned)
	}
	if (p.OnChange != "" || p.Unpinned != "") && len(p.Tools) == 0 {
		el.add(fp+".tools", "is empty, so nothing is pinned; run `mcpguard policy pin --upstream URL` to write the pins")
	}
	for name, h := range p.Tools {
		kp := fmt.Sprintf("%s.tools[%q]", fp, name)
		if !ValidToolName(name) {
			el.add(kp, "names %q, outside MCP's tool-name grammar; no tool could match it", name)
		}
		hexPart, ok := strings.CutPrefix(h, "sha256:")
		if b, err := hex.DecodeString(hexPart); !ok || err != nil || len(b) != sha256.Size {
			el.add(kp, "is %q; a pin is \"sha256:\" and 64 hex digits, as `mcpguard policy pin` writes it", truncate(h))
		}
		if out.tools == nil {
			out.tools = map[string]string{}
		}
		out.tools[name] = h
		out.enabled = true
	}
}

// toolDef is what the engine keeps of a tool's last listed definition.
type toolDef struct {
	raw    [sha256.Size]byte // SHA-256 of the definition's bytes as listed
	hash   string
	legacy string          // legacyPinHash, for the message to a pre-full-definition pin
	props  map[string]bool // top-level properties of the inputSchema
	// schema is the compiled inputSchema, or nil and why it cannot be
	// used. It is compiled on the first schema check of the definition,
	// not when it is listed: a policy without schema checks never starts
	// the JSON Schema library (issue #18).
	schema func() (*jsonschema.Schema, string)
}

// maxDefinitions bounds the tool definitions an engine remembers, against an
// upstream that lists endless tools.
const maxDefinitions = 4096

func defKey(server, tool string) string { return server + "\x00" + tool }

// definition returns the last definition listed for the input's tool, or
// nil.
func (e *Engine) definition(in *Input) *toolDef {
	if v, ok := e.defs.Load(defKey(in.Server, in.Tool)); ok {
		return v.(*toolDef)
	}
	return nil
}

// observe records a listed definition; its inputSchema is compiled once per
// distinct definition, by the first schema check that needs it.
func (e *Engine) observe(in *Input) (*toolDef, error) {
	// The same bytes as last time need neither canonical hashing nor a
	// schema compilation: the common case of a client listing again.
	raw := sha256.Sum256(in.Definition)
	key := defKey(in.Server, in.Tool)
	if v, ok := e.defs.Load(key); ok && v.(*toolDef).raw == raw {
		return v.(*toolDef), nil
	}
	hash, err := PinHash(in.Definition)
	if err != nil {
		return nil, err
	}
	if v, ok := e.defs.Load(key); ok && v.(*toolDef).hash == hash {
		same := *v.(*toolDef) // other bytes, same canonical definition
		same.raw = raw
		e.defs.Store(key, &same)
		return &same, nil
	}
	legacy, _ := legacyPinHash(in.Definition)
	def := &toolDef{raw: raw, hash: hash, legacy: legacy}
	var d struct {
		InputSchema json.RawMessage `json:"inputSchema"`
	}
	if err := json.Unmarshal(in.Definition, &d); err != nil || len(d.InputSchema) == 0 {
		def.schema = func() (*jsonschema.Schema, string) { return nil, "the definition has no inputSchema" }
	} else {
		_, def.props, _ = parseInputSchema(d.InputSchema)
		tool, schema := in.Tool, d.InputSchema // a copy: json.Unmarshal's
		def.schema = sync.OnceValues(func() (*jsonschema.Schema, string) {
			sch, _, why := compileInputSchema(tool, schema)
			return sch, why
		})
	}
	if _, loaded := e.defs.Load(key); loaded || e.ndefs.Add(1) <= maxDefinitions {
		e.defs.Store(key, def)
	}
	return def, nil
}

// compileInputSchema compiles an advertised inputSchema: the compiled
// schema (nil when it cannot be used, and why), and the names of its
// top-level properties.
func compileInputSchema(tool string, raw []byte) (*jsonschema.Schema, map[string]bool, string) {
	doc, props, why := parseInputSchema(raw)
	if why != "" {
		return nil, props, why
	}
	sch, why := compileSchemaDoc(tool, doc)
	return sch, props, why
}

// parseInputSchema decodes an advertised inputSchema and names its
// top-level properties; why says what is wrong when it is not JSON.
func parseInputSchema(raw []byte) (doc any, props map[string]bool, why string) {
	doc, err := decodeJSON(raw)
	if err != nil {
		return nil, nil, fmt.Sprintf("the inputSchema is not valid JSON: %v", err)
	}
	props = map[string]bool{}
	if obj, ok := doc.(map[string]any); ok {
		if p, ok := obj["properties"].(map[string]any); ok {
			for k := range p {
				props[k] = true
			}
		}
	}
	return doc, props, ""
}

// compileSchemaDoc compiles a decoded inputSchema. References are never
// fetched: the loader refuses every scheme, so a schema cannot make the
// proxy read a file or call a URL. The compiler only reads doc.
func compileSchemaDoc(tool string, doc any) (*jsonschema.Schema, string) {
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{})
	c.DefaultDraft(jsonschema.Draft2020)
	loc := "urn:mcpguard:tool:" + tool
	if err := c.AddResource(loc, doc); err != nil {
		return nil, truncate(err.Error())
	}
	sch, err := c.Compile(loc)
	if err != nil {
		return nil, truncate(err.Error())
	}
	return sch, ""
}

// blockState records that a server's tools are blocked under the policy of
// one generation, because one of them changed.
type blockState struct {
	gen  uint64
	tool string
}

// checkPins applies the pins to a tools/list entry (list) or a tools/call;
// ok false with the denial when the pins refuse it.
func (e *Engine) checkPins(c *compiled, in *Input, list bool) (Decision, bool) {
	rule := "pin/" + in.Tool
	if v, ok := e.blocked.Load(in.Server); ok && v.(blockState).gen == c.gen {
		b := v.(blockState)
		return Decision{Rule: "pin/" + b.tool, Reason: fmt.Sprintf("server %q is blocked: the definition of its tool %q changed since it was pinned", in.Server, b.tool)}, false
	}
	var def *toolDef
	if list {
		if len(in.Definition) == 0 {
			return Decision{Rule: rule, Reason: fmt.Sprintf("tool %q was listed without its definition, which the pins need", in.Tool)}, false
		}
		d, err := e.observe(in)
		if err != nil {
			return Decision{Rule: rule, Reason: err.Error()}, false
		}
		def = d
	} else if def = e.definition(in); def == nil {
		return Decision{Rule: rule, Reason: fmt.Sprintf("tool %q has not been listed, so its definition cannot be checked against its pin", in.Tool)}, false
	}
	want, pinned := c.pins.tools[in.Tool]
	switch {
	case !pinned && !c.pins.unpinnedAllow:
		return Decision{Rule: rule, Reason: fmt.Sprintf("tool %q has no pin; review it and add its pin (mcpguard policy pin)", in.Tool)}, false
	case pinned && def.hash != want:
		if c.pins.block && list {
			e.blocked.Store(in.Server, blockState{gen: c.gen, tool: in.Tool})
		}
		if want == def.legacy {
			return Decision{Rule: rule, Reason: fmt.Sprintf("the pin of tool %q was written by an older mcpguard and covers only name, description and inputSchema; re-pin with `mcpguard policy pin --upstream URL` (pins now cover the whole definition)", in.Tool)}, false
		}
		return Decision{Rule: rule, Reason: fmt.Sprintf("the definition of tool %q changed since it was pinned (now %s, pinned %s)", in.Tool, short(def.hash), short(want))}, false
	}
	return Decision{}, true
}

func short(h string) string {
	if len(h) > len("sha256:")+12 {
		return h[:len("sha256:")+12]
	}
	return h
}
