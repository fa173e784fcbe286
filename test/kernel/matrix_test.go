package kernel

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMatrixFromEnv(t *testing.T) {
	tests := []struct {
		name        string
		kernel, cpu string
		want        []string
		wantErr     string
	}{
		{name: "default is everything", want: []string{"6.1-amd", "6.1-intel", "6.12-amd", "6.12-intel"}},
		{name: "one cell", kernel: "6.12", cpu: "intel", want: []string{"6.12-intel"}},
		{name: "all keyword and list", kernel: "all", cpu: "amd", want: []string{"6.1-amd", "6.12-amd"}},
		{name: "comma list", kernel: "6.12, 6.1", cpu: "amd", want: []string{"6.12-amd", "6.1-amd"}},
		{name: "unknown kernel", kernel: "5.10", wantErr: `KERNEL="5.10"`},
		{name: "unknown cpu", cpu: "arm", wantErr: `CPU="arm"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"KERNEL": tc.kernel, "CPU": tc.cpu}
			cells, err := MatrixFromEnv(func(k string) string { return env[k] })
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			var got []string
			for _, c := range cells {
				got = append(got, c.String())
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestQemuCPU(t *testing.T) {
	amd, err := CPUAMD.qemuCPU()
	require.NoError(t, err)
	require.Equal(t, "qemu64", amd)
	intel, err := CPUIntel.qemuCPU()
	require.NoError(t, err)
	require.Contains(t, intel, "vendor=GenuineIntel,family=6,model=85")
	_, err = CPUModel("arm").qemuCPU()
	require.Error(t, err)
}
