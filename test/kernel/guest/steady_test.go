package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestSteadyPlan(t *testing.T) {
	p := steadyPlan{cpus: []int{0, 2, 3}, base: 0x100000}
	tests := []struct {
		k    int
		cpu  int
		addr uint64
	}{
		{0, 0, 0x100000}, {1, 2, 0x101000}, {2, 3, 0x102000}, {3, 0, 0x103000}, {10, 2, 0x10a000},
	}
	for _, tc := range tests {
		cpu, addr := p.at(tc.k)
		require.Equal(t, tc.cpu, cpu, "k=%d", tc.k)
		require.Equal(t, tc.addr, addr, "k=%d", tc.k)
	}
	storm := steadyPlan{cpus: []int{0, 1}, base: 0x100000, stormEvery: 2, stormAddr: 0x5040}
	for k, want := range []uint64{0x5040, 0x101000, 0x5040, 0x103000, 0x5040} {
		_, addr := storm.at(k)
		require.Equal(t, want, addr, "storm plan, k=%d", k)
	}
	_, err := parseCPUs("0,x")
	require.ErrorContains(t, err, "CPU list")
	cpus, err := parseCPUs("0, 1,3")
	require.NoError(t, err)
	require.Equal(t, []int{0, 1, 3}, cpus)
}

// mceInjectTree is a fixture of mce-inject's files: regular files, so
// every write the injector makes is kept in order.
func mceInjectTree(t *testing.T) env {
	files := map[string][]byte{"proc/cpuinfo": []byte("vendor_id\t: GenuineIntel\n")}
	for _, f := range injectFields {
		files["sys/kernel/debug/mce-inject/"+f] = nil
	}
	return fakeEnv(t, files)
}

// allowedCPU is a CPU this test may pin itself to.
func allowedCPU(t *testing.T) int {
	var set unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &set))
	for c := 0; c < 1024; c++ {
		if set.IsSet(c) {
			return c
		}
	}
	t.Fatal("no CPU allowed")
	return -1
}

func TestInjectSteady(t *testing.T) {
	cpu := allowedCPU(t)
	tests := []struct {
		name      string
		max       string
		stopFirst bool
		want      int
	}{
		{name: "until max", max: "4", want: 4},
		{name: "stop file already there", max: "4", stopFirst: true, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mceInjectTree(t)
			stop := filepath.Join(t.TempDir(), "stop")
			if tc.stopFirst {
				require.NoError(t, os.WriteFile(stop, nil, 0o644))
			}
			data, err := cmdInjectSteady(e, []string{fmt.Sprint(cpu), "0x200000", "1ms", stop, tc.max})
			require.NoError(t, err)
			require.Equal(t, tc.want, data["injected"])
			addrs, err := os.ReadFile(e.paths.DebugPath("mce-inject", "addr"))
			require.NoError(t, err)
			var want []string
			for k := 0; k < tc.want; k++ {
				want = append(want, fmt.Sprintf("%#x\n", 0x200000+k*0x1000))
			}
			require.Equal(t, strings.Join(want, ""), string(addrs), "one page per error, in order")
			banks, err := os.ReadFile(e.paths.DebugPath("mce-inject", "bank"))
			require.NoError(t, err)
			require.Equal(t, strings.Repeat("7\n", tc.want), string(banks), "the Intel model's memory-controller bank")
		})
	}
}
