package telemetry

import (
	"encoding/json"
	"testing"
)

func TestRedact(t *testing.T) {
	r, err := NewRedactor([]string{`internal-[0-9]+`})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"url":"https://api.github.com/repos"}`, `{"url":"https://api.github.com/repos"}`},
		{`{"url":"https://user:pw@example.com/x?a=1&token=abc123&b=2"}`, `{"url":"[REDACTED]example.com/x?a=1&[REDACTED]&b=2"}`},
		{`{"headers":{"Authorization":"Bearer xyz","X-Api-Key":"k","Accept":"*/*"}}`, `{"headers":{"Authorization":"[REDACTED]","X-Api-Key":"[REDACTED]","Accept":"*/*"}}`},
		{`{"password":{"nested":"x"},"n":1.5,"ok":true,"z":null}`, `{"password":"[REDACTED]","n":1.5,"ok":true,"z":null}`},
		{`{"cmd":"curl -H 'Authorization: Bearer abc.def' https://x"}`, `{"cmd":"curl -H 'Authorization: [REDACTED]' https://x"}`},
		{`{"list":["AKIAABCDEFGHIJKLMNOP","ghp_0123456789abcdefghijABCD","ok"]}`, `{"list":["[REDACTED]","[REDACTED]","ok"]}`},
		{`{"jwt":"eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"}`, `{"jwt":"[REDACTED]"}`},
		{`{"host":"internal-42.corp"}`, `{"host":"[REDACTED].corp"}`},
		{`{"q":"<b> \"quoted\" é"}`, `{"q":"<b> \"quoted\" é"}`},
		{`{"a":truex}`, `"[REDACTED]"`},
		// What an outside review found the redaction missed.
		{`{"t":"github_pat_11ABCDEFG0123456789abc_0123456789abcdefghijABCDEFGHIJklmnop"}`, `{"t":"[REDACTED]"}`},
		{`{"k":"AWS_KEY_AKIAIOSFODNN7EXAMPLE"}`, `{"k":"AWS_KEY_[REDACTED]"}`},
		{`{"k":"AKIA%49OSFODNN7EXAMPLE"}`, `{"k":"[REDACTED]"}`},
		{`{"k":"AKIA\u200bIOSFODNN7EXAMPLE"}`, `{"k":"[REDACTED]"}`},
		{`{"u":"https://gitlab.example/api?private_token=glpat-abc&x=1"}`, `{"u":"https://gitlab.example/api?private_[REDACTED]&x=1"}`},
		{`{"u":"https://b.s3.amazonaws.com/o?X-Amz-Credential=AK%2F1&X-Amz-Signature=fe5f80f7"}`, `{"u":"https://b.s3.amazonaws.com/o?X-Amz-[REDACTED]&X-Amz-[REDACTED]"}`},
		{`{"pass%77ord":"hunter2","to%6Ben":"x"}`, `{"pass%77ord":"[REDACTED]","to%6Ben":"[REDACTED]"}`},
		{"{\"pass\u200bword\":\"hunter2\"}", "{\"pass\u200bword\":\"[REDACTED]\"}"},
		{`{"c":"xoxb-1234567890-abcdefghij","g":"AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"}`, `{"c":"[REDACTED]","g":"[REDACTED]"}`},
		{`not json`, `"[REDACTED]"`},
	} {
		got := string(r.Redact(json.RawMessage(tc.in)))
		if got != tc.want {
			t.Errorf("Redact(%s)\n got %s\nwant %s", tc.in, got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("Redact(%s) is not JSON: %s", tc.in, got)
		}
	}
}

func TestRedactorRejectsBadPattern(t *testing.T) {
	if _, err := NewRedactor([]string{"("}); err == nil || err.Error() != "redact: \"(\": error parsing regexp: missing closing ): `(`" {
		t.Errorf("err = %v", err)
	}
}
