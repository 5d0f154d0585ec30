package pgtest

import (
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of the test server, for tests of what
// weft does when the database goes away: Cut closes every connection
// through it and refuses new ones (it accepts and closes them at once);
// Hold closes them too but keeps new ones open without an answer, as a
// network that drops packets would; Restore forwards again. It stops when
// the test ends.
type Proxy struct {
	lis    net.Listener
	target string

	mu       sync.Mutex
	cut      bool
	hold     bool
	restored chan struct{}
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// NewProxy starts a proxy on a free loopback port in front of the server
// of EnvURL.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()

	u, err := url.Parse(URL(t))
	if err != nil {
		t.Fatalf("parsing %s: %v", EnvURL, err)
	}

	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting proxy: %v", err)
	}

	p := &Proxy{lis: lis, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)

	return p
}

// Via returns dbURL (a postgres:// URL of the test server) with its host
// and port replaced by the proxy's.
func (p *Proxy) Via(t testing.TB, dbURL string) string {
	t.Helper()

	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("parsing %q: %v", dbURL, err)
	}

	u.Host = p.lis.Addr().String()

	return u.String()
}

// Cut closes every open connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.stop(false)
}

// Hold closes every open connection and holds new ones, unanswered,
// until Restore closes them.
func (p *Proxy) Hold() {
	p.stop(true)
}

func (p *Proxy) stop(hold bool) {
	p.mu.Lock()
	defer p.mu.Unlock()

	if !p.cut {
		p.restored = make(chan struct{})
	}

	p.cut, p.hold = true, hold
	for c := range p.conns {
		_ = c.Close()
	}
}

// Restore forwards new connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.cut {
		close(p.restored)
	}

	p.cut, p.hold = false, false
}

// serve accepts until the listener closes.
func (p *Proxy) serve() {
	defer p.wg.Done()

	for {
		c, err := p.lis.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}

		p.wg.Add(1)
		go p.forward(c)
	}
}

// forward pipes one client connection to the server both ways, unless
// the proxy is cut.
func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()

	if held, restored := p.held(); held {
		<-restored
		_ = client.Close()

		return
	}

	if !p.track(client) {
		_ = client.Close()

		return
	}
	defer p.untrack(client)

	server, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(server) {
		if server != nil {
			_ = server.Close()
		}

		return
	}
	defer p.untrack(server)

	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
}

// held says whether the proxy holds new connections, and until when.
func (p *Proxy) held() (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()

	return p.hold, p.restored
}

// track adds an open connection, unless the proxy is cut.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.cut {
		return false
	}

	p.conns[c] = struct{}{}

	return true
}

// untrack closes a connection and forgets it.
func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()

	_ = c.Close()
	delete(p.conns, c)
}

// close stops accepting, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) close() {
	_ = p.lis.Close()
	p.Cut()
	p.Restore()
	p.Cut()
	p.wg.Wait()
}
