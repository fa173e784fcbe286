package cpuoffline

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{in: "", want: nil},
		{in: "\n", want: nil},
		{in: "(null)\n", want: nil},
		{in: "0", want: []int{0}},
		{in: "0-3\n", want: []int{0, 1, 2, 3}},
		{in: "0-1,3", want: []int{0, 1, 3}},
		{in: "5,0-2,1", want: []int{0, 1, 2, 5}},
		{in: "0-7:2/4", want: []int{0, 1, 4, 5}},
		{in: "3-3", want: []int{3}},
		{in: "3-1", wantErr: "end before start"},
		{in: "0,,1", wantErr: "empty region"},
		{in: "a", wantErr: "bad number"},
		{in: "-1", wantErr: "missing number"},
		{in: "1-", wantErr: "missing number"},
		{in: "+1", wantErr: "bad number"},
		{in: "0-99999999", wantErr: "out of range"},
		{in: "0-7:5/4", wantErr: "used <= group"},
		{in: "0-7:0/4", wantErr: "used <= group"},
		{in: "3:1/2", wantErr: "needs a range"},
		{in: "0-7:2", wantErr: "used/size"},
		{in: "N", wantErr: "bad number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCPUList(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestFormatCPUList(t *testing.T) {
	require.Equal(t, "", FormatCPUList(nil))
	require.Equal(t, "0-3,5,7-8", FormatCPUList([]int{0, 1, 2, 3, 5, 7, 8}))
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		last    int
		want    CmdlineIsolation
		wantErr string
	}{
		{name: "none", in: "console=ttyS0 panic=-1 quiet loglevel=4 ras=cec_disable", last: 3},
		{
			name: "flags then list with commas", in: "isolcpus=nohz,domain,managed_irq,1,3-4 quiet", last: 7,
			want: CmdlineIsolation{Isolcpus: []int{1, 3, 4}, IsolcpusFlags: []string{"nohz", "domain", "managed_irq"}},
		},
		{name: "no flags", in: "isolcpus=2-3", last: 7, want: CmdlineIsolation{Isolcpus: []int{2, 3}}},
		{name: "nohz_full with N", in: "nohz_full=4-N", last: 7, want: CmdlineIsolation{NohzFull: []int{4, 5, 6, 7}}},
		{name: "N unknown", in: "nohz_full=4-N", last: -1, wantErr: "nohz_full"},
		{name: "repeated merge", in: "isolcpus=1 isolcpus=3 nohz_full=2", last: 7, want: CmdlineIsolation{Isolcpus: []int{1, 3}, NohzFull: []int{2}}},
		{name: "quoted", in: `isolcpus="2"`, last: 7, want: CmdlineIsolation{Isolcpus: []int{2}}},
		{name: "unknown flag is an error", in: "isolcpus=bogus,2", last: 7, wantErr: "isolcpus"},
		{name: "similar key ignored", in: "xisolcpus=2 isolcpus_foo=1", last: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.in, tt.last)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"", "(null)", "0-3", "0-1,3", "0-7:2/4", "5,0-2", "3-1", "1-N", "65536", "0-65535:1/65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := ParseCPUList(s)
		if err != nil {
			return
		}
		for i, c := range cpus {
			if c < 0 || c > MaxCPU || (i > 0 && c <= cpus[i-1]) {
				t.Fatalf("ParseCPUList(%q) = %v: not sorted, unique and in range", s, cpus)
			}
		}
		again, err := ParseCPUList(FormatCPUList(cpus))
		if err != nil || len(again) != len(cpus) {
			t.Fatalf("round trip of %q via %q: %v %v", s, FormatCPUList(cpus), again, err)
		}
	})
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"isolcpus=domain,managed_irq,2-3", "nohz_full=1-N quiet", "isolcpus=", "isolcpus=nohz", `isolcpus="1,2"`} {
		f.Add(s, 7)
	}
	f.Fuzz(func(t *testing.T, s string, last int) {
		iso, err := ParseCmdline(s, last%(MaxCPU+1))
		if err != nil {
			return
		}
		for _, list := range [][]int{iso.Isolcpus, iso.NohzFull} {
			for i, c := range list {
				if c < 0 || (i > 0 && c <= list[i-1]) {
					t.Fatalf("ParseCmdline(%q) = %+v: not sorted and unique", s, iso)
				}
			}
		}
	})
}
