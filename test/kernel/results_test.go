package kernel

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseResults(t *testing.T) {
	tests := []struct {
		name    string
		console string
		want    []string // step:ok
		wantErr string
	}{
		{name: "plain", console: "@@RESULT {\"step\":\"a\",\"ok\":true}\n@@RESULT {\"step\":\"b\",\"ok\":false,\"error\":\"x\"}\n", want: []string{"a:true", "b:false"}},
		{name: "crlf and kernel noise", console: "[    4.1] mce: noise\r\n@@RESULT {\"step\":\"a\",\"ok\":true}\r\n", want: []string{"a:true"}},
		{name: "printk prefix on the same line", console: "[    4.2] reboot@@RESULT {\"step\":\"a\",\"ok\":true}\n", want: []string{"a:true"}},
		{name: "no results", console: "SeaBIOS\nBooting\n"},
		{name: "garbled json", console: "@@RESULT {\"step\":\"a\",\"ok\":tr[ 4.1] oops\n", wantErr: "1 unparsable"},
		{name: "printk after the json", console: "@@RESULT {\"step\":\"a\",\"ok\":true}[    5.3] mce: [Hardware Error]: CPU 1\n", want: []string{"a:true"}},
		{name: "printk inside the json", console: "@@RESULT {\"step\":\"a\",\"o[    5.3] mce: [Hardware Error]: CPU 1\nk\":true}\n@@RESULT {\"step\":\"b\",\"ok\":true}\n", want: []string{"a:true", "b:true"}},
		{name: "kernel lines between the two halves", console: "@@RESULT {\"step\":\"a\",\"o[    5.3] mce: [Hardware Error]: CPU 1\n[    5.4] mce: [Hardware Error]: TSC 1\n[    5.5] mce: PROCESSOR 2\nk\":true}\n@@RESULT {\"step\":\"b\",\"ok\":true}\n", want: []string{"a:true", "b:true"}},
		{name: "cut twice", console: "@@RESULT {\"step\":\"a\",\"o[    5.3] mce: CPU 1\n[    5.4] mce: TSC 1\nk\":tr[    5.6] mce: CPU 2\n[    5.7] mce: TSC 2\nue}\n", want: []string{"a:true"}},
		{name: "garbled across lines", console: "@@RESULT {\"step\":\"a\",\"o[    5.3] x\nnot json\n", wantErr: "1 unparsable"},
		{name: "missing step", console: "@@RESULT {\"ok\":true}\n", wantErr: "no step"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := ParseResults(tc.console)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			var got []string
			for _, r := range rs {
				got = append(got, r.Step+":"+map[bool]string{true: "true", false: "false"}[r.OK])
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestResultAccessors(t *testing.T) {
	rs, err := ParseResults(`@@RESULT {"step":"kpf","ok":true,"data":{"pfn":"0x2019","hwpoison":true,"n":4}}` + "\n")
	require.NoError(t, err)
	r := Results(rs).Step("kpf")
	require.Len(t, r, 1)
	require.Equal(t, "0x2019", r[0].String("pfn"))
	b, ok := r[0].Bool("hwpoison")
	require.True(t, ok)
	require.True(t, b)
	n, ok := r[0].Number("n")
	require.True(t, ok)
	require.Equal(t, 4.0, n)
	_, ok = r[0].Number("pfn")
	require.False(t, ok, "a string is not a number")
	require.Empty(t, Results(rs).Step("other"))
}

func TestResultsSection(t *testing.T) {
	rs, err := ParseResults(`@@RESULT {"step":"insmod:x","ok":true}
@@RESULT {"step":"section","ok":true,"data":{"name":"page"}}
@@RESULT {"step":"kpf","ok":true}
@@RESULT {"step":"section","ok":true,"data":{"name":"cpu"}}
@@RESULT {"step":"kpf","ok":false}
@@RESULT {"step":"cpu-online","ok":true}
`)
	require.NoError(t, err)
	page := Results(rs).Section("page")
	require.Len(t, page, 1)
	require.True(t, page[0].OK)
	require.Len(t, Results(rs).Section("cpu"), 2)
	require.Empty(t, Results(rs).Section("storm"))
}

func TestBootInfo(t *testing.T) {
	up, done := bootInfo("x\n@@BOOTED 3.55 6.12.117+deb12-amd64\r\n@@RESULT {}\n@@DONE rc=0\n")
	require.Equal(t, "3.55", up)
	require.True(t, done)
	up, done = bootInfo("Kernel panic\n")
	require.Empty(t, up)
	require.False(t, done)
}

func FuzzParseResults(f *testing.F) {
	f.Add("@@RESULT {\"step\":\"a\",\"ok\":true,\"data\":{\"x\":1}}\n")
	f.Add("@@RESULT \n@@RESULT {\n")
	f.Add("noise@@RESULT {\"step\":\"\"}\r\n")
	f.Fuzz(func(t *testing.T, console string) {
		rs, _ := ParseResults(console)
		for _, r := range rs {
			require.NotEmpty(t, r.Step)
		}
		_, _ = bootInfo(console)
	})
}
