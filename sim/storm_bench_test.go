package sim

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkStorm measures how fast the simulator encodes and writes memory
// CEs into an instance whose per-CPU buffer a reader drains.
func BenchmarkStorm(b *testing.B) {
	for _, kernel := range []string{"6.1", "6.12"} {
		b.Run(kernel, func(b *testing.B) {
			m, err := Build(b.TempDir(), Profile{Kernel: kernel, CPU: "intel", CPUs: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			dir := m.Paths().TracingPath("instances", "bench")
			if err := mkdirAndSync(m, dir); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				drainUntil(ctx, filepath.Join(dir, "per_cpu/cpu0/trace_pipe_raw"))
			}()
			pages := []uint64{0x100000, 0x101000, 0x102000, 0x103000}
			const perCall = 10000
			for b.Loop() {
				if err := m.Storm(perCall, pages); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*perCall)/b.Elapsed().Seconds(), "records/s")
			cancel()
			<-done
			if m.Stats().Overrun != 0 {
				b.Fatalf("overrun %d", m.Stats().Overrun)
			}
		})
	}
}

func mkdirAndSync(m *Machine, dir string) error {
	if err := unix.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := m.Sync(); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "events/mce/mce_record/enable"), []byte("1\n"))
}

func drainUntil(ctx context.Context, path string) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		_, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			_, _ = unix.Poll(fds, 10)
		}
	}
}
