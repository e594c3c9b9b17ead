package oauthlogin

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestCallbackPageReachesBrowser: the sign-in goes on, and the loopback
// listener closes, the moment the authorization response arrives; the
// browser still gets the whole page, not a reset connection.
func TestCallbackPageReachesBrowser(t *testing.T) {
	// Several processors make the race this is about (the listener closed before the
	// handler's page is out) likely enough to see in 200 sign-ins.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for i := range 200 {
		cb, _, err := listenLoopback(nil, "")
		if err != nil {
			t.Fatal(err)
		}
		cb.state <- "st"
		got := make(chan string, 1)
		go func() {
			res, err := http.Get(cb.redirect + "?" + url.Values{"code": {"c"}, "state": {"st"}}.Encode())
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- res.Status + " " + string(body)
		}()
		if r := <-cb.results; r.err != nil || r.res.Code != "c" {
			t.Fatalf("result %+v, %v", r.res, r.err)
		}
		cb.close()
		if page := <-got; !strings.HasPrefix(page, "200 ") || !strings.Contains(page, "Signed in") {
			t.Fatalf("sign-in %d: the browser got %q", i, page)
		}
	}
}

// pageFirst records whether the page was flushed before the sign-in's
// result was published: the order TestCallbackPageReachesBrowser needs,
// which a real socket shows only now and then.
type pageFirst struct {
	httptest.ResponseRecorder
	cb            *callback
	flushedBefore bool
}

func (w *pageFirst) Flush() {
	w.flushedBefore = len(w.cb.results) == 0 && strings.Contains(w.Body.String(), "Signed in")
}

func TestCallbackFlushesBeforeResult(t *testing.T) {
	cb, _, err := listenLoopback(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cb.close()
	cb.state <- "st"
	w := &pageFirst{ResponseRecorder: *httptest.NewRecorder(), cb: cb}
	cb.serve(w, httptest.NewRequest(http.MethodGet, "/callback?code=c&state=st", nil))
	if !w.flushedBefore {
		t.Error("the sign-in's result was published before the page was flushed to the browser")
	}
	if r := <-cb.results; r.err != nil || r.res.Code != "c" {
		t.Errorf("result %+v, %v", r.res, r.err)
	}
}

// TestCallbackClosesPromptly: a connection the browser opened ahead and
// never used (browsers preconnect) does not hold the sign-in up.
func TestCallbackClosesPromptly(t *testing.T) {
	cb, _, err := listenLoopback(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	idle, err := net.Dial("tcp", cb.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(10 * time.Millisecond) // accepted
	start := time.Now()
	cb.close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("closing the listener took %s with a preconnected browser socket open", took)
	}
}
