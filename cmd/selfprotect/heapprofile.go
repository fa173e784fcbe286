package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"
)

// startHeapProfile writes a pprof heap profile to path, and logs the Go
// runtime's memory classes, each time the daemon gets SIGUSR1 (after a
// GC, so the profile shows what is live): the idle benchmarks ask for one
// at the instant they read the resident set, to say what the heap holds.
// A diagnostic of the benches, not an operator's knob.
func startHeapProfile(path string, log logrus.FieldLogger) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-sig:
				runtime.GC()
				if err := writeHeapProfile(path); err != nil {
					log.WithError(err).Error("heap profile")
					continue
				}
				log.WithField("file", path).WithField("runtime", memoryClasses()).Info("heap profile written")
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
		wg.Wait()
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating the heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("writing the heap profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the heap profile: %w", err)
	}
	return nil
}

// memoryClasses is the runtime's own account of the memory it mapped, in
// KiB: "heap/objects=2100 heap/free=300 ..." (names under
// /memory/classes/, zero classes left out).
func memoryClasses() string {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") && d.Kind == metrics.KindUint64 {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	parts := make([]string, 0, len(samples))
	for _, s := range samples {
		if v := s.Value.Uint64(); v > 0 {
			name := strings.TrimSuffix(strings.TrimPrefix(s.Name, "/memory/classes/"), ":bytes")
			parts = append(parts, fmt.Sprintf("%s=%d", name, v>>10))
		}
	}
	return strings.Join(parts, " ")
}
