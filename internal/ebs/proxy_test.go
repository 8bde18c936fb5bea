package ebs

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
)

// ec2Proxy stands between a Client and moto: it forwards every EC2 query
// API request to moto and its answer back, records the requests'
// parameters, and lets a test refuse requests with an EC2 error or edit
// moto's answers, for what moto cannot be made to do (throttling, states
// other than the final one).
type ec2Proxy struct {
	URL    string
	target string

	mu    sync.Mutex
	calls []url.Values
	// refuse returns the EC2 error code to answer a request with instead
	// of forwarding it, or "".
	refuse func(form url.Values) string
	// rewrite edits moto's answer to a request.
	rewrite func(form url.Values, body string) string
}

func newEC2Proxy(t *testing.T, target string) *ec2Proxy {
	p := &ec2Proxy{target: target}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// set installs the refuse and rewrite hooks (either may be nil).
func (p *ec2Proxy) set(refuse func(url.Values) string, rewrite func(url.Values, string) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse, p.rewrite = refuse, rewrite
}

// requests returns the parameters of the requests for action so far.
func (p *ec2Proxy) requests(action string) []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []url.Values
	for _, f := range p.calls {
		if f.Get("Action") == action {
			out = append(out, f)
		}
	}
	return out
}

func (p *ec2Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.calls = append(p.calls, form)
	refuse, rewrite := p.refuse, p.rewrite
	p.mu.Unlock()

	if refuse != nil {
		if code := refuse(form); code != "" {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>refused by the test proxy</Message></Error></Errors><RequestID>proxy</RequestID></Response>`, code)
			return
		}
	}

	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out := string(answer)
	if rewrite != nil {
		out = rewrite(form, out)
	}
	for k, vs := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.WriteString(w, out)
}

// countdown returns a function that is true the first n times it is called.
func countdown(n int) func() bool {
	var mu sync.Mutex
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		n--
		return n >= 0
	}
}

// replaceFirst replaces the first match of re in s by repl (with $1...).
func replaceFirst(re *regexp.Regexp, s, repl string) string {
	m := re.FindStringSubmatchIndex(s)
	if m == nil {
		return s
	}
	return s[:m[0]] + string(re.ExpandString(nil, repl, s, m)) + s[m[1]:]
}

// withSnapshotState sets the state, message and progress of snapshot id
// in a DescribeSnapshots answer.
func withSnapshotState(body, id, state, message, progress string) string {
	re := regexp.MustCompile(`(?s)(<snapshotId>` + regexp.QuoteMeta(id) + `</snapshotId>.*?)<status>[^<]*</status>(.*?)<progress>[^<]*</progress>`)
	return replaceFirst(re, body, "${1}<status>"+state+"</status><statusMessage>"+message+"</statusMessage>${2}<progress>"+progress+"</progress>")
}

// withVolumeState sets the state of volume id in a DescribeVolumes answer.
func withVolumeState(body, id, state string) string {
	re := regexp.MustCompile(`(?s)(<volumeId>` + regexp.QuoteMeta(id) + `</volumeId>.*?)<status>[^<]*</status>`)
	return replaceFirst(re, body, "${1}<status>"+state+"</status>")
}

// withAttachmentState sets the state of volume id's attachment in a
// DescribeVolumes answer.
func withAttachmentState(body, id, state string) string {
	re := regexp.MustCompile(`(?s)(<attachmentSet><item><volumeId>` + regexp.QuoteMeta(id) + `</volumeId>.*?)<status>[^<]*</status>`)
	return replaceFirst(re, body, "${1}<status>"+state+"</status>")
}

// isAction reports whether form is a request for action.
func isAction(form url.Values, action string) bool {
	return form.Get("Action") == action
}
