package testrig

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FaultProxy is a TCP proxy on 127.0.0.1 in front of an HTTP/1.1 server
// (MinIO) that injects network faults, switched on and off while it runs:
// connections reset, stalled or corrupted after a given number of bytes of
// a request or response body (FaultRule), latency added to every message,
// a blackhole, and connections reset as soon as they are accepted.
//
// It parses no more HTTP than it needs to find where each request and
// response head ends (so that "after N bytes" counts body bytes, and rules
// can match on the request). It assumes what Go's and MinIO's HTTP/1.1 do:
// no pipelining; a new request starts with the first bytes the client sends
// after a final (non-1xx) response began.
//
// Every fault that fires is counted by kind (Count, Stats), and WaitCount
// waits for one: tests synchronise on these events, never on sleeps.
type FaultProxy struct {
	ln net.Listener

	mu           sync.Mutex
	target       string
	latency      time.Duration
	blackhole    chan struct{} // non-nil while on; closed when lifted
	epoch        int           // incremented by every blackhole
	acceptResets int
	rules        []*armedRule
	conns        map[*proxyConn]struct{}
	stats        map[string]int
	changed      chan struct{} // closed and replaced when stats change
	closed       bool

	wg sync.WaitGroup
}

// Kinds of events counted by a FaultProxy (see Count).
const (
	FaultAccepted    = "accepted"     // connections accepted
	FaultAcceptReset = "accept-reset" // connections reset at once (ResetOnAccept)
	FaultBlackholed  = "blackholed"   // connections held by a blackhole (once per blackhole)
	FaultDelayed     = "delayed"      // messages delayed by SetLatency
	FaultDialFailed  = "dial-failed"  // connections reset because the target refused
	FaultDropped     = "dropped"      // connections reset by ResetAll
	// A FaultRule's event is its action's name ("reset", "stall", "flip"),
	// with "-upload" appended for upload rules, e.g. "reset-upload".
)

// FaultAction is what a FaultRule does to a body.
type FaultAction int

const (
	// Reset forwards FaultRule.After body bytes, then resets both
	// connections (RST): the peer sees "connection reset" mid-body.
	Reset FaultAction = iota
	// Stall forwards After body bytes, then nothing more in that
	// direction until one side closes the connection.
	Stall
	// Flip inverts the bits of the body byte at offset After and goes on.
	Flip
)

func (a FaultAction) String() string {
	switch a {
	case Reset:
		return "reset"
	case Stall:
		return "stall"
	case Flip:
		return "flip"
	}
	return fmt.Sprintf("FaultAction(%d)", int(a))
}

// FaultRule is a fault in the body of requests (Upload) or responses.
type FaultRule struct {
	Action FaultAction
	Upload bool  // the request body rather than the response body
	After  int64 // body bytes forwarded untouched first
	// Times is how often the rule fires before it expires; 0 means until
	// it is disarmed. A body shorter than After does not use it up.
	Times int
	// Match selects the exchanges the rule applies to by their request
	// (its head only; Body is empty). Nil matches every exchange. It runs
	// on the proxy's goroutines, for every exchange while the rule is live
	// (so it may record them); it must not block or call the proxy.
	Match func(*http.Request) bool
}

type armedRule struct {
	FaultRule
	fired    atomic.Int64
	disarmed atomic.Bool
}

// use reports whether the rule may fire once more, and counts it if so.
func (r *armedRule) use() bool {
	for {
		if r.disarmed.Load() {
			return false
		}
		n := r.fired.Load()
		if r.Times > 0 && n >= int64(r.Times) {
			return false
		}
		if r.fired.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (r *armedRule) live() bool {
	return !r.disarmed.Load() && (r.Times == 0 || r.fired.Load() < int64(r.Times))
}

func (r *armedRule) event() string {
	if r.Upload {
		return r.Action.String() + "-upload"
	}
	return r.Action.String()
}

// StartFaultProxy starts a proxy to target ("host:port") on a free
// 127.0.0.1 port, with no fault armed. It is closed when t ends.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy: %v", err)
	}
	p := &FaultProxy{
		ln:      ln,
		target:  target,
		conns:   map[*proxyConn]struct{}{},
		stats:   map[string]int{},
		changed: make(chan struct{}),
	}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// URL is http://Addr, for an S3 endpoint.
func (p *FaultProxy) URL() string { return "http://" + p.Addr() }

// SetTarget makes new connections go to target.
func (p *FaultProxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// SetLatency delays the first bytes of every request and every response by
// d (0: off), as a round trip of 2d would.
func (p *FaultProxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Blackhole switches the blackhole on or off. While it is on, connections
// are accepted but not forwarded, and open connections forward nothing in
// either direction: clients wait, as behind a dead route. Lifted, held
// traffic goes on (as TCP retransmission would deliver it).
func (p *FaultProxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.blackhole == nil:
		p.blackhole = make(chan struct{})
		p.epoch++
	case !on && p.blackhole != nil:
		close(p.blackhole)
		p.blackhole = nil
	}
}

// ResetOnAccept makes the next n accepted connections reset at once,
// before anything is forwarded.
func (p *FaultProxy) ResetOnAccept(n int) {
	p.mu.Lock()
	p.acceptResets = n
	p.mu.Unlock()
}

// Arm adds a rule; the returned function disarms it. Rules are tried in
// the order they were armed; the first live one that matches an exchange
// is the only one that may fire in it.
func (p *FaultProxy) Arm(r FaultRule) (disarm func()) {
	a := &armedRule{FaultRule: r}
	p.mu.Lock()
	p.rules = append(p.rules, a)
	p.mu.Unlock()
	return func() {
		a.disarmed.Store(true)
		p.mu.Lock()
		defer p.mu.Unlock()
		for i, x := range p.rules {
			if x == a {
				p.rules = append(p.rules[:i], p.rules[i+1:]...)
				break
			}
		}
	}
}

// Clear switches every fault off: rules, latency, blackhole, accept resets.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	for _, r := range p.rules {
		r.disarmed.Store(true)
	}
	p.rules = nil
	p.latency = 0
	p.acceptResets = 0
	p.mu.Unlock()
	p.Blackhole(false)
}

// ResetAll resets every open connection (both sides).
func (p *FaultProxy) ResetAll() {
	for _, c := range p.openConns() {
		p.count(FaultDropped)
		c.teardown(true)
	}
}

func (p *FaultProxy) openConns() []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Keys(p.conns))
}

// Count returns how many events of a kind happened so far.
func (p *FaultProxy) Count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats[kind]
}

// Stats returns every event count, e.g. for a test's report.
func (p *FaultProxy) Stats() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.stats)
}

// StatsString renders Stats as "kind=n ..." in a stable order.
func (p *FaultProxy) StatsString() string {
	st := p.Stats()
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(st)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, st[k])
	}
	return b.String()
}

// Wait blocks until Count(kind) >= n or ctx ends.
func (p *FaultProxy) Wait(ctx context.Context, kind string, n int) error {
	for {
		p.mu.Lock()
		got, ch := p.stats[kind], p.changed
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fault proxy: %d %s events, waiting for %d: %w", got, kind, n, ctx.Err())
		}
	}
}

// WaitCount is Wait for a test: it fails t after timeout.
func (p *FaultProxy) WaitCount(t testing.TB, kind string, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.Wait(ctx, kind, n); err != nil {
		t.Fatalf("%v (events: %s)", err, p.StatsString())
	}
}

// Close stops the proxy and resets every connection.
func (p *FaultProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Blackhole(false)
	for _, c := range p.openConns() {
		c.teardown(true)
	}
	p.wg.Wait()
}

func (p *FaultProxy) count(kind string) {
	p.mu.Lock()
	p.stats[kind]++
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *FaultProxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.count(FaultAccepted)
		pc := &proxyConn{p: p, client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			resetConn(c)
			return
		}
		p.conns[pc] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(pc.serve)
	}
}

// gate waits while a blackhole is on, counting the connection once per
// blackhole. It returns false when the connection ended meanwhile.
func (p *FaultProxy) gate(c *proxyConn) bool {
	for {
		p.mu.Lock()
		bh, epoch := p.blackhole, p.epoch
		p.mu.Unlock()
		if bh == nil {
			return true
		}
		if c.heldEpoch.Swap(int64(epoch)) != int64(epoch) {
			p.count(FaultBlackholed)
		}
		select {
		case <-bh:
		case <-c.done:
			return false
		}
	}
}

// proxyConn is one proxied connection.
type proxyConn struct {
	p         *FaultProxy
	client    net.Conn
	done      chan struct{}
	once      sync.Once
	heldEpoch atomic.Int64

	mu     sync.Mutex
	server net.Conn
	ex     exchange
}

// exchange is the state of the HTTP request and response under way on a
// connection.
type exchange struct {
	started  bool // the request's first bytes were seen
	reqHead  []byte
	req      *http.Request // nil if the head did not parse
	reqDone  bool          // request head complete
	respHead []byte
	respDone bool // final response head complete
	reqBody  int64
	respBody int64
	upRule   *armedRule
	downRule *armedRule
}

func (c *proxyConn) serve() {
	p := c.p
	defer c.teardown(false)
	p.mu.Lock()
	reset := p.acceptResets > 0
	if reset {
		p.acceptResets--
	}
	p.mu.Unlock()
	if reset {
		p.count(FaultAcceptReset)
		c.teardown(true)
		return
	}
	if !p.gate(c) {
		return
	}
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	server, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		p.count(FaultDialFailed)
		c.teardown(true)
		return
	}
	c.mu.Lock()
	c.server = server
	c.mu.Unlock()
	select {
	case <-c.done: // torn down while dialing
		resetConn(server)
		return
	default:
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.pump(c.client, server, true) })
	wg.Go(func() { c.pump(server, c.client, false) })
	wg.Wait()
}

// teardown closes both sides once, with RST when reset.
func (c *proxyConn) teardown(reset bool) {
	c.once.Do(func() {
		close(c.done)
		c.mu.Lock()
		server := c.server
		c.mu.Unlock()
		for _, conn := range []net.Conn{c.client, server} {
			if conn == nil {
				continue
			}
			if reset {
				resetConn(conn)
			} else {
				conn.Close()
			}
		}
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
}

// resetConn closes conn with a TCP RST rather than a FIN.
func resetConn(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// step is what to do with one chunk read from one side.
type step struct {
	delay  bool // a message starts: apply the latency
	cut    int  // bytes to forward before the action; -1: no action
	rule   *armedRule
	action FaultAction
}

// pump copies src to dst; up is the client-to-server direction.
func (c *proxyConn) pump(src, dst net.Conn, up bool) {
	defer c.teardown(false)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !c.forward(dst, buf[:n], up) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forward sends chunk to dst, applying faults. It returns false when the
// connection is finished.
func (c *proxyConn) forward(dst net.Conn, chunk []byte, up bool) bool {
	p := c.p
	if !p.gate(c) {
		return false
	}
	s := c.track(chunk, up)
	if s.delay {
		p.mu.Lock()
		d := p.latency
		p.mu.Unlock()
		if d > 0 {
			p.count(FaultDelayed)
			select {
			case <-time.After(d):
			case <-c.done:
				return false
			}
		}
	}
	if s.cut < 0 || !s.rule.use() {
		_, err := dst.Write(chunk)
		return err == nil
	}
	if _, err := dst.Write(chunk[:s.cut]); err != nil {
		return false
	}
	p.count(s.rule.event())
	switch s.action {
	case Reset:
		c.teardown(true)
		return false
	case Stall:
		<-c.done
		return false
	default: // Flip
		rest := bytes.Clone(chunk[s.cut:])
		rest[0] ^= 0xff
		_, err := dst.Write(rest)
		return err == nil
	}
}

var headEnd = []byte("\r\n\r\n")

// maxHead bounds the bytes kept while looking for the end of a head.
const maxHead = 64 << 10

// track updates the exchange state with a chunk and says how to forward it.
func (c *proxyConn) track(chunk []byte, up bool) step {
	c.mu.Lock()
	defer c.mu.Unlock()
	ex := &c.ex
	s := step{cut: -1}
	if up {
		if !ex.started || ex.respDone {
			*ex = exchange{started: true} // a new exchange
			s.delay = true
		}
		body := chunk
		if !ex.reqDone {
			var ok bool
			ex.reqHead, body, ok = appendHead(ex.reqHead, chunk)
			if !ok {
				return s
			}
			ex.reqDone = true
			ex.req, _ = http.ReadRequest(bufio.NewReader(bytes.NewReader(ex.reqHead)))
			ex.upRule = c.p.pick(ex.req, true)
		}
		applyRule(&s, ex.upRule, &ex.reqBody, chunk, body)
		return s
	}
	body := chunk
	for !ex.respDone {
		if len(ex.respHead) == 0 {
			s.delay = true
		}
		var ok bool
		ex.respHead, body, ok = appendHead(ex.respHead, body)
		if !ok {
			return s
		}
		if bytes.HasPrefix(ex.respHead, []byte("HTTP/1.1 1")) || bytes.HasPrefix(ex.respHead, []byte("HTTP/1.0 1")) {
			ex.respHead = ex.respHead[:0] // interim (100 Continue): a final head follows
			continue
		}
		ex.respDone = true
		ex.downRule = c.p.pick(ex.req, false)
	}
	applyRule(&s, ex.downRule, &ex.respBody, chunk, body)
	return s
}

// applyRule sets s to act on the body bytes at the end of chunk (body is
// its suffix) when they cross the rule's offset.
func applyRule(s *step, r *armedRule, seen *int64, chunk, body []byte) {
	start := *seen
	*seen += int64(len(body))
	if r == nil || len(body) == 0 || r.After < start || r.After >= *seen {
		return
	}
	s.rule, s.action = r, r.Action
	s.cut = len(chunk) - len(body) + int(r.After-start)
}

// appendHead appends chunk to a head being read. When the head is complete
// it returns it and the bytes after it, with ok set.
func appendHead(head, chunk []byte) (full, rest []byte, ok bool) {
	from := max(0, len(head)-len(headEnd)+1)
	head = append(head, chunk...)
	i := bytes.Index(head[from:], headEnd)
	if i < 0 {
		if len(head) > maxHead { // not HTTP as we know it: stop looking
			return head[:0], nil, true
		}
		return head, nil, false
	}
	end := from + i + len(headEnd)
	rest = chunk[len(chunk)-(len(head)-end):]
	return head[:end], rest, true
}

// pick returns the first live rule for this direction that matches req.
// Match functions run without the proxy's lock.
func (p *FaultProxy) pick(req *http.Request, upload bool) *armedRule {
	p.mu.Lock()
	rules := slices.Clone(p.rules)
	p.mu.Unlock()
	for _, r := range rules {
		if r.Upload != upload || !r.live() {
			continue
		}
		if r.Match != nil && (req == nil || !r.Match(req)) {
			continue
		}
		return r
	}
	return nil
}
