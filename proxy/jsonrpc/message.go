package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// Version is the only JSON-RPC version MCP speaks.
const Version = "2.0"

// Standard JSON-RPC 2.0 error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// ID is a JSON-RPC request id: a string or a number, kept as it was written
// so that "1" and 1 stay different ids and an answer carries the agent's
// own spelling. The zero ID is absent (a notification); NullID is the
// explicit null of an error response to a message whose id could not be
// read.
//
// A number not written as a plain integer (1.5, 1e2, -0) also has a key,
// its value: a peer that echoes it as it reads it (1.50 as 1.5, 1e2 as
// 100, -0 as 0, as JavaScript does) still answers the same id (issue #14).
type ID struct {
	raw string
	key string // "" when raw is the key
}

// NullID is the id of an error response to an unreadable request.
var NullID = ID{raw: "null"}

// StringID returns the id for a string.
func StringID(s string) ID { return ID{raw: string(AppendString(nil, s))} }

// IntID returns the id for an integer.
func IntID(n int64) ID { return ID{raw: strconv.FormatInt(n, 10)} }

// IsZero reports whether the id is absent.
func (id ID) IsZero() bool { return id.raw == "" }

// String returns the id's key: its canonical JSON ("" when absent), or for
// a number not written as a plain integer the value's ("100" for 1e2). It
// is a stable map key: two ids are the same id exactly when their Strings
// are equal.
func (id ID) String() string {
	if id.key != "" {
		return id.key
	}
	return id.raw
}

// Raw returns the id as it was written.
func (id ID) Raw() string { return id.raw }

// maxNumericID bounds a numeric id's length and its exponent: a value is
// computed for one written otherwise than as a plain integer.
const maxNumericID = 64

// numericID reads a JSON number (valid by RFC 8259's grammar) as an id.
func numericID(raw string) (ID, error) {
	if len(raw) > maxNumericID {
		return ID{}, fmt.Errorf("id %s is longer than %d characters", raw, maxNumericID)
	}
	if n, err := strconv.ParseInt(raw, 10, 64); err == nil && strconv.FormatInt(n, 10) == raw {
		return ID{raw: raw}, nil // a plain integer, nearly every id
	}
	if i := strings.IndexAny(raw, "eE"); i >= 0 {
		if exp, err := strconv.Atoi(strings.TrimPrefix(raw[i+1:], "+")); err != nil || exp > 2*maxNumericID || exp < -2*maxNumericID {
			return ID{}, fmt.Errorf("id %s is out of range", raw)
		}
	}
	r, ok := new(big.Rat).SetString(raw)
	if !ok {
		return ID{}, fmt.Errorf("id %s is not a number", raw)
	}
	// A peer that reads numbers as doubles (JavaScript) echoes the
	// shortest double's digits: an id whose value they do not hold
	// exactly would come back as another id, and its answer be lost.
	f, _ := strconv.ParseFloat(raw, 64)
	if back, ok := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64)); !ok || back.Cmp(r) != 0 {
		return ID{}, fmt.Errorf("id %s is out of range: a peer reading numbers as doubles would echo another id", raw)
	}
	if r.IsInt() {
		return ID{raw: raw, key: r.Num().String()}, nil
	}
	return ID{raw: raw, key: "rat:" + r.RatString()}, nil
}

// MarshalJSON implements json.Marshaler.
func (id ID) MarshalJSON() ([]byte, error) {
	if id.raw == "" {
		return []byte("null"), nil
	}
	return []byte(id.raw), nil
}

// Error is a JSON-RPC error object.
type Error struct {
	Code    int64           `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc error %d: %s", e.Code, e.Message) }

// Kind says what a Message is.
type Kind int

const (
	KindRequest Kind = iota + 1
	KindNotification
	KindResponse
)

// Message is one JSON-RPC message: a request, a notification or a response.
// It is the single message model every transport of the proxy shares. Params,
// Result and Error.Data hold canonical JSON (see Canonical), so encoding a
// decoded Message yields exactly the bytes the policy evaluated.
type Message struct {
	ID     ID
	Method string
	Params json.RawMessage
	Result json.RawMessage
	Error  *Error

	params paramsIndex // of Params as decoded; see Param
	result paramsIndex // of Result as decoded; see ResultMember
}

// Kind reports what the message is.
func (m *Message) Kind() Kind {
	switch {
	case m.Method != "" && m.ID.IsZero():
		return KindNotification
	case m.Method != "":
		return KindRequest
	default:
		return KindResponse
	}
}

type wireMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      *ID             `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// MarshalJSON encodes the message from its typed fields.
func (m *Message) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(nil)
}

// AppendJSON appends the message's JSON encoding to dst.
//
// Params and Result are appended as they are: they hold canonical JSON (see
// Message), so encoding/json's validate-and-compact pass over them changed
// nothing and cost a full scan and two copies of every payload, the largest
// part of the proxy's own CPU per 64 KiB call (issue #2, Performance). The
// output is byte for byte what encoding/json produces (TestAppendJSONFast);
// messages with an Error or an unusual method still take that path.
func (m *Message) AppendJSON(dst []byte) ([]byte, error) {
	if m.Error != nil || !plainString(m.Method) {
		return m.appendJSONReflect(dst)
	}
	kind := m.Kind()
	dst = slices.Grow(dst, len(`{"jsonrpc":"2.0","id":,"method":"","params":,"result":}`)+
		len(m.ID.raw)+len(m.Method)+len(m.Params)+max(len(m.Result), 2))
	dst = append(dst, `{"jsonrpc":"2.0"`...)
	switch kind {
	case KindRequest:
		dst = append(append(dst, `,"id":`...), m.ID.raw...)
	case KindResponse:
		id := m.ID
		if id.IsZero() {
			id = NullID
		}
		dst = append(append(dst, `,"id":`...), id.raw...)
	}
	if m.Method != "" {
		dst = append(append(append(dst, `,"method":"`...), m.Method...), '"')
	}
	if len(m.Params) > 0 {
		dst = append(append(dst, `,"params":`...), m.Params...)
	}
	result := m.Result
	if kind == KindResponse && result == nil {
		result = json.RawMessage("{}")
	}
	if len(result) > 0 {
		dst = append(append(dst, `,"result":`...), result...)
	}
	return append(dst, '}'), nil
}

// plainString reports whether s needs no escaping as a JSON string, by
// encoding/json's rules too: printable ASCII without '"' or '\\'.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendJSONReflect is AppendJSON through encoding/json.
func (m *Message) appendJSONReflect(dst []byte) ([]byte, error) {
	w := wireMessage{JSONRPC: Version, Method: m.Method, Params: m.Params, Result: m.Result, Error: m.Error}
	switch m.Kind() {
	case KindRequest:
		id := m.ID
		w.ID = &id
	case KindResponse:
		id := m.ID
		if id.IsZero() {
			id = NullID
		}
		w.ID = &id
		if m.Error == nil && m.Result == nil {
			w.Result = json.RawMessage("{}")
		}
	}
	buf := bytes.NewBuffer(dst)
	enc := json.NewEncoder(buf)
	// The payload is canonical already; HTML escaping would change it.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&w); err != nil {
		return dst, err
	}
	out := buf.Bytes()
	return out[:len(out)-1], nil // Encode adds a newline
}

// Encode returns the JSON encoding of a message.
func Encode(m *Message) ([]byte, error) { return m.AppendJSON(nil) }

// EncodeBatch returns the JSON encoding of a batch.
func EncodeBatch(msgs []*Message) ([]byte, error) {
	out := []byte{'['}
	for i, m := range msgs {
		if i > 0 {
			out = append(out, ',')
		}
		var err error
		if out, err = m.AppendJSON(out); err != nil {
			return nil, err
		}
	}
	return append(out, ']'), nil
}

// DecodeError is why a message was refused, with the JSON-RPC code to answer
// it with and the id of the offending request when it could be read.
type DecodeError struct {
	Code int64
	ID   ID
	Err  error
}

func (e *DecodeError) Error() string { return e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

func invalid(id ID, format string, args ...any) *DecodeError {
	return &DecodeError{Code: CodeInvalidRequest, ID: id, Err: fmt.Errorf(format, args...)}
}

// Decode parses one message or a batch strictly (see Canonical) and reports
// whether it was a batch. Every element of a batch must be a valid message:
// one bad element refuses the whole batch, because answering part of a batch
// would hide from the client which of its messages were dropped.
//
// Nothing it returns points into data (TestDecodeKeepsNoInput): the caller
// may reuse data at once. A caller that gives data up calls DecodeInPlace.
func Decode(data []byte, lim Limits) (msgs []*Message, batch bool, err error) {
	lay := getLayout()
	defer putLayout(lay)
	canon, inPlace, err := canonical(nil, data, lim, lay)
	if err != nil {
		return nil, false, decodeFailed(data, err)
	}
	if inPlace {
		canon = bytes.Clone(canon)
	}
	return decodeCanonical(canon, lay)
}

// DecodeInPlace is Decode for a caller that gives data up (a message body
// read for it alone). When data is canonical already but for whitespace
// around it, as Go's encoding/json and JavaScript's JSON.stringify write
// it, the messages point into data instead of a copy of its canonical
// form, and inPlace is true: then data must never be changed or reused,
// by the caller or by a pool it came from. When inPlace is false nothing
// returned points into data. A 64 KiB call is forwarded without a copy
// of its arguments being made to decode it (issue #18).
func DecodeInPlace(data []byte, lim Limits) (msgs []*Message, batch, inPlace bool, err error) {
	lay := getLayout()
	defer putLayout(lay)
	canon, inPlace, err := canonical(nil, data, lim, lay)
	if err != nil {
		return nil, false, false, decodeFailed(data, err)
	}
	msgs, batch, err = decodeCanonical(canon, lay)
	return msgs, batch, inPlace && err == nil, err
}

// decodeFailed is the error for data that is not strict JSON.
func decodeFailed(data []byte, err error) error {
	var se *SizeError
	if errors.As(err, &se) {
		return err
	}
	return &DecodeError{Code: CodeParseError, ID: readableID(data), Err: err}
}

// decodeCanonical reads the messages of a canonical message or batch; lay
// is where the scanner found a message's members (not a batch's).
func decodeCanonical(canon []byte, lay *layout) (msgs []*Message, batch bool, err error) {
	if len(canon) > 0 && canon[0] == '[' {
		elems, err := arrayElems(canon)
		if err != nil {
			return nil, true, &DecodeError{Code: CodeParseError, ID: NullID, Err: err}
		}
		if len(elems) == 0 {
			return nil, true, invalid(NullID, "empty batch")
		}
		msgs = make([]*Message, 0, len(elems))
		for i, e := range elems {
			m := new(Message)
			if err := decodeMessage(m, e, nil, nil); err != nil {
				err.Err = fmt.Errorf("batch element %d: %w", i, err.Err)
				return nil, true, err
			}
			msgs = append(msgs, m)
		}
		return msgs, true, nil
	}
	one := new(single)
	if derr := decodeMessage(&one.m, canon, lay, one.members[:0]); derr != nil {
		return nil, false, derr
	}
	one.list[0] = &one.m
	return one.list[:], false, nil
}

// single is what a message that is not a batch is decoded into, in one
// allocation rather than three: the message, the one-element slice Decode
// returns, and the index of its params or result when they have at most
// len(members) members (most messages: a tools/call's params are name,
// arguments and perhaps _meta). What Decode returns keeps it whole.
type single struct {
	m       Message
	list    [1]*Message
	members [3]indexedMember
}

// readableID returns the id of a message the strict reading refused (a
// duplicate key, a key in another letter case), so the refusal can answer
// it and the client, which matches answers by id, does not wait for ever
// (issue #14): the value of the one top-level key spelled exactly "id",
// when the bytes are JSON and it is a string or an integer. Anything less
// certain, an id given twice among them, is NullID.
func readableID(data []byte) ID {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return NullID
	}
	id, seen := NullID, false
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return NullID
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return NullID
		}
		if key != "id" {
			continue
		}
		if seen {
			return NullID
		}
		seen = true
		var s string
		var n json.Number
		switch {
		case string(v) == "null" || !utf8.Valid(v):
			return NullID
		case json.Unmarshal(v, &s) == nil:
			id = StringID(s)
		case json.Unmarshal(v, &n) == nil:
			nid, err := numericID(string(v))
			if err != nil {
				return NullID
			}
			id = nid
		default:
			return NullID
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return NullID // not JSON: nothing in it is certain
	}
	return id
}

// DecodeOne parses exactly one message; a batch is an error.
func DecodeOne(data []byte, lim Limits) (*Message, error) {
	msgs, batch, err := Decode(data, lim)
	if err != nil {
		return nil, err
	}
	if batch {
		return nil, invalid(NullID, "a batch is not allowed here")
	}
	return msgs[0], nil
}

// decodeMessage reads one canonical JSON value as a message into the zero
// Message m, its members from lay when not nil. The index of its params or
// result is built in members when they fit (indexParams).
func decodeMessage(m *Message, canon []byte, lay *layout, members []indexedMember) *DecodeError {
	if len(canon) == 0 || canon[0] != '{' {
		return invalid(NullID, "a message must be a JSON object")
	}
	var (
		version               []byte
		idRaw, method, errRaw []byte
		hasResult             bool
		unknown               []byte // the first member that is none of the above
	)
	// The members are scanned in place (this runs for every message, both
	// ways) and only a key with escapes is unquoted.
	sc := memberScanner{obj: canon}
	var params, result memberSpan // where they are in lay
	for k := 0; ; k++ {
		var tok, value []byte
		if lay != nil {
			if k == len(lay.top) {
				break
			}
			tok, value = lay.top[k].in(canon, 0)
		} else {
			var ok bool
			if tok, value, ok = sc.next(); !ok {
				break
			}
		}
		key := tok[1 : len(tok)-1]
		if !unescaped(key) {
			k, err := unquote(tok)
			if err != nil {
				return &DecodeError{Code: CodeParseError, ID: NullID, Err: err}
			}
			key = []byte(k)
		}
		switch string(key) {
		case "jsonrpc":
			version = value
		case "id":
			idRaw = value
		case "method":
			method = value
		case "params":
			m.Params = json.RawMessage(value)
			if lay != nil {
				params = lay.top[k]
			}
		case "result":
			m.Result = json.RawMessage(value)
			hasResult = true
			if lay != nil {
				result = lay.top[k]
			}
		case "error":
			errRaw = value
		default:
			if unknown == nil {
				unknown = key
			}
		}
	}
	if sc.err != nil {
		return &DecodeError{Code: CodeParseError, ID: NullID, Err: sc.err}
	}
	if unknown != nil {
		// Case-sensitive and closed: "Method" or "ID" are not aliases.
		return invalid(NullID, "unknown member %q in JSON-RPC message", unknown)
	}
	if idRaw != nil {
		switch {
		case idRaw[0] == '"':
			m.ID = ID{raw: string(idRaw)}
		case idRaw[0] == '-' || (idRaw[0] >= '0' && idRaw[0] <= '9'):
			id, err := numericID(string(idRaw))
			if err != nil {
				return invalid(NullID, "%v", err)
			}
			m.ID = id
		case string(idRaw) == "null":
			m.ID = NullID
		default:
			return invalid(NullID, "id %s must be a string or an integer", idRaw)
		}
	}
	if string(version) != `"2.0"` {
		if version == nil {
			return invalid(m.ID, `missing "jsonrpc": "2.0"`)
		}
		return invalid(m.ID, `"jsonrpc" must be "2.0", got %s`, version)
	}
	if method != nil {
		if method[0] != '"' {
			return invalid(m.ID, `"method" must be a string`)
		}
		s, err := unquote(method)
		if err != nil || s == "" {
			return invalid(m.ID, `"method" must be a non-empty string`)
		}
		if m.ID == NullID {
			return invalid(NullID, "a request id must not be null")
		}
		if hasResult || errRaw != nil {
			return invalid(m.ID, `a request must not carry "result" or "error"`)
		}
		if m.Params != nil && m.Params[0] != '{' {
			// JSON-RPC allows positional params; MCP never uses them.
			return invalid(m.ID, `"params" must be an object`)
		}
		m.Method = s
		m.params = indexParams(m.Params, lay, params, members)
		return nil
	}
	// A response.
	if m.Params != nil {
		return invalid(m.ID, `a response must not carry "params"`)
	}
	if idRaw == nil {
		return invalid(NullID, `a message must have a "method" or an "id"`)
	}
	if hasResult == (errRaw != nil) {
		return invalid(m.ID, `a response must carry exactly one of "result" and "error"`)
	}
	if errRaw != nil {
		e, err := decodeError(errRaw)
		if err != nil {
			return invalid(m.ID, "%v", err)
		}
		m.Error = e
	} else if m.ID == NullID {
		return invalid(NullID, "a result must have a non-null id")
	} else {
		m.result = indexParams(m.Result, lay, result, members)
	}
	return nil
}

func decodeError(raw []byte) (*Error, error) {
	if raw[0] != '{' {
		return nil, errors.New(`"error" must be an object`)
	}
	members, err := objectMembers(raw)
	if err != nil {
		return nil, err
	}
	var e Error
	var haveCode, haveMsg bool
	for _, mb := range members {
		switch mb.key {
		case "code":
			n, err := strconv.ParseInt(string(mb.value), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("error code %s must be an integer", mb.value)
			}
			e.Code, haveCode = n, true
		case "message":
			if err := json.Unmarshal(mb.value, &e.Message); err != nil || mb.value[0] != '"' {
				return nil, errors.New("error message must be a string")
			}
			haveMsg = true
		case "data":
			e.Data = json.RawMessage(mb.value)
		default:
			return nil, fmt.Errorf("unknown member %q in error object", mb.key)
		}
	}
	if !haveCode || !haveMsg {
		return nil, errors.New(`an error object needs "code" and "message"`)
	}
	return &e, nil
}

// Pieces is an encoding kept as the slices it is made of, for a writer
// that sends it once, such as an HTTP request's body (Reader): a message's
// params and result are referenced, not copied, so forwarding a 64 KiB
// call copies its arguments once, into the connection, instead of twice
// more into an encoding of the message and one with trace context added
// (issue #18). What it references must not change while it is read; a
// decoded message's payloads never do. Payloads shorter than
// copiedPayload are copied, so that a small message is one slice. The
// zero Pieces is empty; a Pieces written to must not be copied (its
// pieces may be held in its own array).
type Pieces struct {
	bufs  [][]byte
	first [4][]byte // bufs' array while they fit: a small message has one or two pieces
	n     int
	// head holds what is copied; the last piece is head's tail while
	// atHead (then writing extends it). A slice of head taken before it
	// grows still holds what was written: append never writes below len.
	head   []byte
	atHead bool
	// pooled, when set (Pooled), is where head comes from and where
	// Release puts it back.
	pooled *[]byte
}

// heads holds the arrays of Pieces that were released, for others to copy
// into: a small call's encoding costs no allocation of its own.
var heads = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledHead bounds the arrays kept in heads: a large message's must
// not stay in the pool.
const maxPooledHead = 16 << 10

// Pooled makes p copy into an array from a pool, which Release gives
// back. It is called before anything is written to p.
func (p *Pieces) Pooled() {
	if p.pooled == nil && p.head == nil {
		p.pooled = heads.Get().(*[]byte)
		p.head = (*p.pooled)[:0]
	}
}

// Release gives the array a Pooled p copied into back to the pool, and
// empties p. Neither p nor anything taken from it (Bytes, Reader, the
// slices they return) may be used afterwards: another Pieces writes into
// that array next.
func (p *Pieces) Release() {
	hp := p.pooled
	*p = Pieces{}
	if hp == nil {
		return
	}
	if cap(*hp) > maxPooledHead {
		return
	}
	heads.Put(hp)
}

// copiedPayload is the length below which a payload is copied rather than
// referenced: a piece more costs more than copying a few hundred bytes.
const copiedPayload = 1 << 10

// Len returns the encoding's length in bytes.
func (p *Pieces) Len() int { return p.n }

// Bytes returns the encoding in one slice, which must not be changed: the
// one piece itself when there is one.
func (p *Pieces) Bytes() []byte {
	if len(p.bufs) == 1 {
		return slices.Clip(p.bufs[0])
	}
	out := make([]byte, 0, p.n)
	for _, b := range p.bufs {
		out = append(out, b...)
	}
	return out
}

// Reader returns a new reader of the encoding from its start.
func (p *Pieces) Reader() io.Reader { return &piecesReader{bufs: p.bufs} }

// piecesReader reads bufs from byte off of the first; it never writes to
// bufs, which it shares with the Pieces and every other reader of them.
type piecesReader struct {
	bufs [][]byte
	off  int
}

func (r *piecesReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) && len(r.bufs) > 0 {
		c := copy(b[n:], r.bufs[0][r.off:])
		n += c
		if r.off += c; r.off == len(r.bufs[0]) {
			r.bufs, r.off = r.bufs[1:], 0
		}
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// ref appends b as a piece of its own, or copies it when it is short.
func (p *Pieces) ref(b []byte) {
	if len(b) < copiedPayload {
		p.write(b)
		return
	}
	p.bufs = append(p.bufs, b)
	p.n += len(b)
	p.atHead = false
}

// write appends b, copied into head.
func (p *Pieces) write(b []byte) {
	if len(b) == 0 {
		return
	}
	if p.bufs == nil {
		p.bufs = p.first[:0]
	}
	switch {
	case cap(p.head)-len(p.head) < len(b):
		// A new array: the last piece can no longer grow in place.
		p.head = append(make([]byte, 0, max(2*cap(p.head), len(b)+256)), b...)
		p.bufs = append(p.bufs, p.head)
		if p.pooled != nil {
			*p.pooled = p.head // the largest, which Release keeps
		}
	case p.atHead:
		p.head = append(p.head, b...)
		last := &p.bufs[len(p.bufs)-1]
		*last = (*last)[:len(*last)+len(b)]
	default:
		start := len(p.head)
		p.head = append(p.head, b...)
		p.bufs = append(p.bufs, p.head[start:])
	}
	p.n += len(b)
	p.atHead = true
}

// writeString appends s, copied into head.
func (p *Pieces) writeString(s string) { p.write(unsafeBytes(s)) }

// AppendRaw appends b as it is (the brackets and commas of a batch); b
// is copied.
func (p *Pieces) AppendRaw(b string) { p.writeString(b) }

// AppendMessage appends m's encoding, byte for byte what AppendJSON
// writes, its params and result referenced.
func (p *Pieces) AppendMessage(m *Message) error {
	return p.appendMessage(m, nil, "", nil)
}

// AppendMessageSetParam appends the encoding of m with the member key of
// its params set to value (canonical JSON), byte for byte what AppendJSON
// writes of m with Params Replace(Params, key, value), a message without
// params taking {} for them. When the params have no member key, the usual
// case, they are referenced and the member is written after them; else
// they are replaced in a copy. An error is Replace's: m's params are not
// a canonical object.
func (p *Pieces) AppendMessageSetParam(m *Message, key string, value json.RawMessage) error {
	params := m.Params
	if params == nil {
		params = json.RawMessage(`{}`)
	}
	found, err := m.hasParam(params, key)
	if err != nil {
		return err
	}
	if found {
		replaced, err := Replace(params, key, value)
		if err != nil {
			return err
		}
		c := *m
		c.Params, c.params = replaced, paramsIndex{}
		return p.appendMessage(&c, nil, "", nil)
	}
	return p.appendMessage(m, params[:len(params)-1], key, value)
}

// hasParam reports whether the canonical object params has the member
// key exactly (as Replace matches it), from m's index when it applies.
func (m *Message) hasParam(params []byte, key string) (bool, error) {
	if ix := &m.params; ix.applies(params) {
		for _, mb := range ix.members {
			if isKey(mb.tok, key) {
				return true, nil
			}
		}
		return false, nil
	}
	sc := memberScanner{obj: params}
	found := false
	for {
		tok, _, ok := sc.next()
		if !ok {
			break
		}
		found = found || isKey(tok, key)
	}
	return found, sc.err
}

// appendMessage appends m's encoding; params, when not nil, stands for
// m.Params without its closing brace, followed by the member key: value.
func (p *Pieces) appendMessage(m *Message, params []byte, key string, value []byte) error {
	if m.Error != nil || !plainString(m.Method) {
		c := *m
		if params != nil {
			c.Params = setMember(nil, params, key, value)
		}
		b, err := c.appendJSONReflect(nil)
		if err != nil {
			return err
		}
		p.ref(b)
		return nil
	}
	// What AppendJSON writes, the payloads referenced.
	kind := m.Kind()
	p.writeString(`{"jsonrpc":"2.0"`)
	switch kind {
	case KindRequest:
		p.writeString(`,"id":`)
		p.writeString(m.ID.raw)
	case KindResponse:
		id := m.ID
		if id.IsZero() {
			id = NullID
		}
		p.writeString(`,"id":`)
		p.writeString(id.raw)
	}
	if m.Method != "" {
		p.writeString(`,"method":"`)
		p.writeString(m.Method)
		p.writeString(`"`)
	}
	switch {
	case params != nil:
		p.writeString(`,"params":`)
		p.ref(params)
		setMember(p, params, key, value)
	case len(m.Params) > 0:
		p.writeString(`,"params":`)
		p.ref(m.Params)
	}
	result := m.Result
	if kind == KindResponse && result == nil {
		result = json.RawMessage("{}")
	}
	if len(result) > 0 {
		p.writeString(`,"result":`)
		p.ref(result)
	}
	p.writeString("}")
	return nil
}

// setMember writes, after params (an object without its closing brace),
// the member key: value and the brace: to p when not nil, else appended
// to a copy of params, which it returns.
func setMember(p *Pieces, params []byte, key string, value []byte) []byte {
	if p != nil {
		p.setMember(len(params) > 1, key, value)
		return nil
	}
	b := append(make([]byte, 0, len(params)+len(key)+len(value)+8), params...)
	if len(params) > 1 {
		b = append(b, ',')
	}
	b = append(AppendString(b, key), ':')
	return append(append(b, value...), '}')
}

// setMember writes the member key: value and the closing brace, after a
// comma when the object has members before it.
func (p *Pieces) setMember(comma bool, key string, value []byte) {
	var scratch [64]byte // the key quoted, copied into head: not a slice of its own
	b := scratch[:0]
	if comma {
		b = append(b, ',')
	}
	p.write(append(AppendString(b, key), ':'))
	p.ref(value)
	p.writeString("}")
}

// unsafeBytes returns s's bytes, which must not be changed.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
