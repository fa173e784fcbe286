package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// request and response are the control protocol's JSON lines (see the
// package comment).
type request struct {
	Op    string   `json:"op"`
	Addr  uint64   `json:"addr,omitempty"`
	CPU   int      `json:"cpu,omitempty"`
	Count int      `json:"count,omitempty"`
	MC    int      `json:"mc,omitempty"`
	DIMM  int      `json:"dimm,omitempty"`
	CE    uint64   `json:"ce,omitempty"`
	PFN   uint64   `json:"pfn,omitempty"`
	Pages []uint64 `json:"pages,omitempty"`
	MCE   *MCE     `json:"mce,omitempty"`
}

type response struct {
	OK       bool             `json:"ok"`
	Error    string           `json:"error,omitempty"`
	Offlined []OfflineRequest `json:"offlined,omitempty"`
	Stats    *Stats           `json:"stats,omitempty"`
}

const maxRequestBytes = 16 << 20 // a storm's page list can be long

// SocketPath is where Serve listens for a tree rooted at dir.
func SocketPath(dir string) string { return filepath.Join(stateDir(dir), "ctl.sock") }

func (m *Machine) listen() (net.Listener, error) {
	path := SocketPath(m.dir)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return ln, nil
}

func (m *Machine) serveControl(ctx context.Context, ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Go(func() {
			m.serveConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		})
	}
}

func (m *Machine) serveConn(c net.Conn) {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), maxRequestBytes)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		var req request
		var resp response
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp = response{Error: fmt.Sprintf("bad request: %v", err)}
		} else {
			resp = m.handle(req)
		}
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
	if sc.Err() != nil {
		_ = enc.Encode(response{Error: fmt.Sprintf("reading request: %v", sc.Err())})
	}
}

func (m *Machine) handle(r request) response {
	var err error
	resp := response{}
	switch r.Op {
	case "mce":
		if r.MCE == nil {
			err = errors.New(`op mce needs "mce"`)
			break
		}
		err = m.InjectMCE(*r.MCE)
	case "memory-ce":
		err = m.InjectMemoryCE(r.Addr, r.Count, r.CPU)
	case KindMemoryCENoSyndrome:
		err = m.InjectMemoryCENoSyndrome(r.Addr, r.Count, r.CPU)
	case "memory-ue":
		err = m.InjectMemoryUE(r.Addr, r.CPU)
	case "cache-ce":
		err = m.InjectCacheCE(r.CPU, r.Count)
	case "edac-ce":
		err = m.InjectEDAC(r.MC, r.DIMM, r.CE)
	case "storm":
		err = m.Storm(r.Count, r.Pages)
	case KindMemoryFailure:
		err = m.KernelMemoryFailure(r.Addr)
	case "fail-next-offline":
		err = m.FailNextOffline(r.Count)
	case "refuse-offline":
		err = m.RefuseOffline(r.PFN)
	case "offlined":
		resp.Offlined = m.Offlined()
	case "stats":
		st := m.Stats()
		resp.Stats = &st
	default:
		err = fmt.Errorf("unknown op %q", r.Op)
	}
	if err != nil {
		return response{Error: err.Error()}
	}
	resp.OK = true
	return resp
}

// Client drives a serving simulator from another process.
type Client struct {
	mu   sync.Mutex
	conn net.Conn
	sc   *bufio.Scanner
}

var _ Injector = (*Client)(nil)

// Dial connects to the simulator serving the tree at dir.
func Dial(dir string) (*Client, error) {
	c, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		return nil, fmt.Errorf("connecting to simulator at %s: %w", dir, err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), maxRequestBytes)
	return &Client{conn: c, sc: sc}, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// ErrRemote wraps an error the simulator reported.
var ErrRemote = errors.New("simulator")

func (c *Client) call(req request) (response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return response{}, fmt.Errorf("encoding %s request: %w", req.Op, err)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return response{}, fmt.Errorf("sending %s request: %w", req.Op, err)
	}
	if !c.sc.Scan() {
		err := c.sc.Err()
		if err == nil {
			err = errors.New("connection closed")
		}
		return response{}, fmt.Errorf("reading %s response: %w", req.Op, err)
	}
	var resp response
	if err := json.Unmarshal(c.sc.Bytes(), &resp); err != nil {
		return response{}, fmt.Errorf("decoding %s response: %w", req.Op, err)
	}
	if !resp.OK {
		return resp, fmt.Errorf("%w: %s", ErrRemote, resp.Error)
	}
	return resp, nil
}

func (c *Client) do(req request) error { _, err := c.call(req); return err }

func (c *Client) InjectMCE(e MCE) error { return c.do(request{Op: "mce", MCE: &e}) }
func (c *Client) InjectMemoryCE(addr uint64, count, cpu int) error {
	return c.do(request{Op: "memory-ce", Addr: addr, Count: count, CPU: cpu})
}

// InjectMemoryCENoSyndrome asks the server for Machine.InjectMemoryCENoSyndrome.
func (c *Client) InjectMemoryCENoSyndrome(addr uint64, count, cpu int) error {
	return c.do(request{Op: KindMemoryCENoSyndrome, Addr: addr, Count: count, CPU: cpu})
}
func (c *Client) InjectMemoryUE(addr uint64, cpu int) error {
	return c.do(request{Op: "memory-ue", Addr: addr, CPU: cpu})
}
func (c *Client) InjectCacheCE(cpu, count int) error {
	return c.do(request{Op: "cache-ce", CPU: cpu, Count: count})
}
func (c *Client) KernelMemoryFailure(addr uint64) error {
	return c.do(request{Op: KindMemoryFailure, Addr: addr})
}
func (c *Client) InjectEDAC(mc, dimm int, ce uint64) error {
	return c.do(request{Op: "edac-ce", MC: mc, DIMM: dimm, CE: ce})
}
func (c *Client) Storm(n int, pages []uint64) error {
	return c.do(request{Op: "storm", Count: n, Pages: pages})
}
func (c *Client) FailNextOffline(n int) error {
	return c.do(request{Op: "fail-next-offline", Count: n})
}
func (c *Client) RefuseOffline(pfn uint64) error {
	return c.do(request{Op: "refuse-offline", PFN: pfn})
}

// Offlined returns the offline requests the simulator has seen.
func (c *Client) Offlined() ([]OfflineRequest, error) {
	resp, err := c.call(request{Op: "offlined"})
	return resp.Offlined, err
}

// Stats returns the simulator's counters.
func (c *Client) Stats() (Stats, error) {
	resp, err := c.call(request{Op: "stats"})
	if err != nil || resp.Stats == nil {
		return Stats{}, err
	}
	return *resp.Stats, nil
}
