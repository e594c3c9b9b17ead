package decisionlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Problem is the first place a chain of records is broken.
type Problem struct {
	// File and Line locate the record (1-based line).
	File string
	Line int
	// Kind is "edited", "inserted", "deleted", "truncated", "unchained" (a
	// line with no chain fields, written before the chain existed or by
	// hand) or "invalid" (not a record).
	Kind string
	// Detail says what did not match.
	Detail string
}

func (p *Problem) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Kind, p.Detail)
}

// Head is where a verified chain ends: an auditor keeps it elsewhere, and a
// later verify that ends before it shows records were cut off the end.
type Head struct {
	Records int
	Seq     uint64
	Digest  string
}

// Source is one file of a chain, in order.
type Source struct {
	Name string
	R    io.Reader
}

// Verify checks that the files, read in order (oldest first, as rotated),
// form one unbroken chain from Genesis, and returns its head, or the first
// problem. A chain can only show what was removed from its end against a
// head kept elsewhere.
func Verify(files []Source) (Head, *Problem) {
	var h Head
	prev, seq := Genesis, uint64(0)
	for _, f := range files {
		br := bufio.NewReaderSize(f.R, 64<<10)
		for n := 1; ; n++ {
			line, err := br.ReadBytes('\n')
			if len(line) == 0 && err == io.EOF {
				break
			}
			if err != nil && err != io.EOF {
				return h, &Problem{File: f.Name, Line: n, Kind: "invalid", Detail: err.Error()}
			}
			complete := bytes.HasSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\n"))
			var r struct {
				Seq      *uint64 `json:"seq"`
				Prev     *string `json:"prev"`
				Method   string  `json:"method"`
				Decision string  `json:"decision"`
			}
			if err := json.Unmarshal(line, &r); err != nil || !complete {
				if !complete || !json.Valid(line) {
					return h, &Problem{File: f.Name, Line: n, Kind: "truncated", Detail: "the line is cut short or garbled"}
				}
				return h, &Problem{File: f.Name, Line: n, Kind: "invalid", Detail: fmt.Sprintf("not a JSON record: %v", err)}
			}
			if r.Seq == nil || r.Prev == nil {
				return h, &Problem{File: f.Name, Line: n, Kind: "unchained", Detail: "the record has no seq/prev: written before the chain existed, or by hand"}
			}
			switch {
			case *r.Seq == seq+1 && *r.Prev == prev:
			case *r.Seq == seq+1:
				// The numbering goes on but the link does not: the record
				// before was changed (or this one's prev was).
				where := n - 1
				if seq == 0 {
					return h, &Problem{File: f.Name, Line: n, Kind: "deleted", Detail: "the chain does not start here (prev is not genesis): records before it were removed, or pass the file it was rotated from first"}
				}
				if where < 1 {
					return h, &Problem{File: f.Name, Line: n, Kind: "edited", Detail: fmt.Sprintf("prev %s is not the digest of the previous file's last record (%s)", *r.Prev, prev)}
				}
				return h, &Problem{File: f.Name, Line: where, Kind: "edited", Detail: fmt.Sprintf("its digest is %s but the next record expects %s", prev, *r.Prev)}
			case *r.Seq > seq+1:
				if seq == 0 {
					return h, &Problem{File: f.Name, Line: n, Kind: "deleted", Detail: fmt.Sprintf("the chain starts at seq %d, not 1: records before it were removed, or pass the file it was rotated from first", *r.Seq)}
				}
				return h, &Problem{File: f.Name, Line: n, Kind: "deleted", Detail: fmt.Sprintf("seq %d follows seq %d: %d record(s) removed before this one", *r.Seq, seq, *r.Seq-seq-1)}
			default:
				return h, &Problem{File: f.Name, Line: n, Kind: "inserted", Detail: fmt.Sprintf("seq %d after seq %d: this record was added (or moved) here", *r.Seq, seq)}
			}
			seq, prev = *r.Seq, Digest(line)
			h.Records++
			if err == io.EOF {
				break
			}
		}
	}
	h.Seq, h.Digest = seq, prev
	return h, nil
}
