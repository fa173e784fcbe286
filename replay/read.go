package replay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// ReadTrace replays every record of a trace; name is used in errors.
// Parsing JSON costs several times what replaying a record does, so lines
// are parsed in batches by one worker per CPU while the records are
// replayed in file order; the first bad line or bad record, in file order,
// stops the replay.
func (r *Replayer) ReadTrace(name string, in io.Reader) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workers := max(runtime.GOMAXPROCS(0), 1)
	work := make(chan *traceBatch, workers)
	ordered := make(chan *traceBatch, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				b.parse(name)
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(ordered)
		defer close(work)
		readErr <- splitBatches(ctx, name, in, work, ordered)
	}()
	// On an early return the reader must stop before the workers can
	// finish: cancel first, then wait.
	defer func() {
		cancel()
		for range ordered {
		}
		wg.Wait()
	}()
	for b := range ordered {
		<-b.done
		for i := range b.recs {
			if b.errs[i] != nil {
				return b.errs[i]
			}
			if b.recs[i].Line == 0 {
				continue // blank or comment
			}
			if err := r.Add(name, &b.recs[i]); err != nil {
				return err
			}
		}
	}
	return <-readErr
}

// batchLines trades parallelism against memory held in flight.
const batchLines = 1024

type traceBatch struct {
	data  []byte // the lines, each ending in '\n'
	first int    // line number of the first line
	n     int    // lines
	recs  []Record
	errs  []error
	done  chan struct{}
}

// parse fills recs and errs, one per line; blank and comment lines leave
// a zero record.
func (b *traceBatch) parse(name string) {
	defer close(b.done)
	data := b.data
	for i := 0; len(data) > 0; i++ {
		end := bytes.IndexByte(data, '\n')
		line := data[:end]
		data = data[end+1:]
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		b.errs[i] = ParseLine(name, b.first+i, line, &b.recs[i])
	}
}

// splitBatches reads lines into batches and hands each to the workers and,
// in order, to the replaying loop.
func splitBatches(ctx context.Context, name string, in io.Reader, work, ordered chan<- *traceBatch) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	var b *traceBatch
	send := func() bool {
		if b == nil {
			return true
		}
		b.recs, b.errs = make([]Record, b.n), make([]error, b.n)
		select {
		case ordered <- b:
		case <-ctx.Done():
			return false
		}
		select {
		case work <- b:
		case <-ctx.Done():
			return false
		}
		b = nil
		return true
	}
	for sc.Scan() {
		line++
		if b == nil {
			b = &traceBatch{first: line, done: make(chan struct{}), data: make([]byte, 0, 256*batchLines)}
		}
		b.data = append(append(b.data, sc.Bytes()...), '\n')
		b.n++
		if b.n == batchLines && !send() {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = &LineError{File: name, Line: line + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxLine)}
		} else {
			err = fmt.Errorf("reading %s: %w", name, err)
		}
		// Lines before the bad one still replay first.
		send()
		return err
	}
	send()
	return nil
}
