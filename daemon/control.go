package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// The control protocol is one JSON request line and one JSON response line
// per connection, so `nc -U` is enough to debug it.

// Request is what the CLI sends.
type Request struct {
	Command string `json:"command"`        // status, pause, resume, repair, acquit, replaced
	Case    string `json:"case,omitempty"` // case ID or unique prefix (repair, acquit, replaced)
	// Resource names what "levels" reports on (page:0x..., cpu:N, ...);
	// without it, the resources closest to tripping each rule.
	Resource string `json:"resource,omitempty"`
}

// Response is what the daemon answers.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	// Message is a human sentence about what a command did.
	Message string `json:"message,omitempty"`
	// Levels are the rate engines' counts for the resource of "levels".
	Levels []policy.Level `json:"levels,omitempty"`
}

type handler func(Request) Response

// listenControl creates the root-only socket. The directory is 0700 and the
// socket 0600: only root (the daemon's user) may pause or resume isolation.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	// A socket file left by a crashed daemon: the state lock already proved
	// nobody owns it.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return l, nil
}

func serveControl(ctx context.Context, l net.Listener, h handler) {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			var req Request
			line, err := bufio.NewReader(c).ReadBytes('\n')
			resp := Response{}
			if err == nil {
				err = json.Unmarshal(line, &req)
			}
			if err != nil {
				resp.Error = fmt.Sprintf("bad request: %v", err)
			} else {
				resp = h(req)
			}
			_ = json.NewEncoder(c).Encode(resp)
		}()
	}
}

// Call sends one request to the daemon at socket.
func Call(socket string, req Request, timeout time.Duration) (Response, error) {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return Response{}, fmt.Errorf("no daemon answers on %s: %w", socket, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, fmt.Errorf("sending to %s: %w", socket, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("reading answer from %s: %w", socket, err)
	}
	if !resp.OK && resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// levels reads the engines' counts for one resource, or for those closest
// to tripping each rule: lookups under the policy lock (a few per rule for
// the closest, whatever the engines track), as short as one event's.
func (d *Daemon) levels(resource string) Response {
	if resource == "" {
		d.policyMu.Lock()
		lv := d.engine.Closest()
		d.policyMu.Unlock()
		return Response{OK: true, Levels: lv}
	}
	r, err := fault.ParseResource(resource)
	if err != nil {
		return Response{Error: fmt.Sprintf("levels: %v", err)}
	}
	d.policyMu.Lock()
	lv := d.engine.Levels(r)
	d.policyMu.Unlock()
	return Response{OK: true, Levels: lv}
}
