// Package pgproxy is a TCP relay on loopback for tests that put faults
// between a client and PostgreSQL: a server that refuses connections, a
// network that stops carrying bytes without closing anything (a stall, a
// silent partition), and a connection cut just before or just after the
// client's COMMIT reaches the server. It imports nothing of ours and only
// tests use it.
package pgproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Cut says where a connection is cut at the client's COMMIT.
type Cut int

// The places a connection can be cut.
const (
	NoCut        Cut = iota
	BeforeCommit     // the bytes that carry COMMIT are dropped
	// AfterCommit: they reach the server, which runs them; its answer
	// (up to ReadyForQuery) is dropped, then the connection is cut.
	AfterCommit
	// WithCommit: they are sent on to the server and the connection is
	// cut at once, while the server may still be running them.
	WithCommit
)

// Proxy relays connections to a target address.
type Proxy struct {
	t      testing.TB
	target string
	addr   string

	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	frozen bool
	thaw   *sync.Cond
	cut    Cut
	cuts   int // connections cut at COMMIT so far

	flights atomic.Uint64 // see Flights
}

// Flights counts the round trips the clients made: a flight is bytes a
// client sends after the server last spoke on that connection (or first),
// so a client that pipelines its statements and waits once for their
// answers makes one, whatever number of messages it sent.
func (p *Proxy) Flights() uint64 { return p.flights.Load() }

// turn records, per connection, whether the server spoke last, and
// whether its answer is to be dropped (AfterCommit).
type turn struct {
	serverSpoke atomic.Bool
	swallow     atomic.Bool
}

// readyForQuery is the message that ends the server's answer to a batch
// (its status byte follows).
var readyForQuery = []byte{'Z', 0, 0, 0, 5}

// New starts a proxy to target on a free loopback port. It stops at the
// end of the test.
func New(t testing.TB, target string) *Proxy {
	p := &Proxy{t: t, target: target}
	p.thaw = sync.NewCond(&p.mu)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Refuse closes the listener (new connections are refused) and every
// relayed connection.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Accept listens again on the same address after Refuse.
func (p *Proxy) Accept() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

// Freeze stops carrying bytes either way on every connection, old and
// new, without closing any: the server seems to stall. Thaw resumes.
func (p *Proxy) Freeze() { p.mu.Lock(); p.frozen = true; p.mu.Unlock() }

// Thaw undoes Freeze.
func (p *Proxy) Thaw() { p.mu.Lock(); p.frozen = false; p.thaw.Broadcast(); p.mu.Unlock() }

// CutAtCommit makes the proxy cut the next connection that sends a
// COMMIT, at where; it reports through Cuts.
func (p *Proxy) CutAtCommit(where Cut) { p.mu.Lock(); p.cut = where; p.mu.Unlock() }

// Cuts is how many connections were cut at COMMIT.
func (p *Proxy) Cuts() int { p.mu.Lock(); defer p.mu.Unlock(); return p.cuts }

// Close stops the proxy and every connection.
func (p *Proxy) Close() { p.Thaw(); p.Refuse() }

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			tr := &turn{}
			tr.serverSpoke.Store(true)
			go p.relay(c, up, tr, true)
			go p.relay(up, c, tr, false)
		}
	}()
}

// relay copies from src to dst, chunk by chunk, holding chunks while
// frozen. Client to server (toServer), it watches for the COMMIT.
func (p *Proxy) relay(src, dst net.Conn, tr *turn, toServer bool) {
	buf := make([]byte, 64<<10)
	var tail []byte // the end of the answer being dropped, for readyForQuery
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen {
				p.thaw.Wait()
			}
			cut := NoCut
			if toServer && p.cut != NoCut && carriesCommit(buf[:n]) {
				cut, p.cut = p.cut, NoCut
				p.cuts++
			}
			p.mu.Unlock()
			if cut == WithCommit {
				_, _ = dst.Write(buf[:n])
			}
			if cut == AfterCommit {
				// The server answers once it has run the COMMIT; the
				// other direction drops that answer and then cuts.
				tr.swallow.Store(true)
				if _, werr := dst.Write(buf[:n]); werr != nil {
					src.Close()
					return
				}
				continue
			}
			if cut != NoCut {
				// The client sees its connection close; the server
				// reads what it was sent, then the end of the stream.
				src.Close()
				dst.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, dst)
				dst.Close()
				return
			}
			if !toServer && tr.swallow.Load() {
				if tail = append(tail[max(0, len(tail)-len(readyForQuery)):], buf[:n]...); bytes.Contains(tail, readyForQuery) {
					// The answer is complete: the client never sees it.
					dst.Close()
					src.Close()
					return
				}
				continue
			}
			if toServer && tr.serverSpoke.Swap(false) {
				p.flights.Add(1)
			} else if !toServer {
				tr.serverSpoke.Store(true)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// commitName is the name pgx's statement cache gives COMMIT's prepared
// statement: after its first use on a connection, a COMMIT travels as a
// Bind message naming it.
var commitName = func() []byte {
	d := sha256.Sum256([]byte("COMMIT"))
	return []byte("stmtcache_" + hex.EncodeToString(d[:24]))
}()

// carriesCommit reports whether b holds a Bind of the COMMIT statement
// ('B', length, empty portal name, statement name), or a simple Query of
// COMMIT.
func carriesCommit(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], commitName)
		if j < 0 {
			break
		}
		at := i + j
		if at >= 6 && b[at-1] == 0 && b[at-6] == 'B' {
			return true
		}
		i = at + 1
	}
	q := bytes.Index(b, []byte("COMMIT\x00"))
	return q >= 5 && b[q-5] == 'Q'
}
