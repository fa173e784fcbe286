package kernel

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"lib/modules/6.1.0-56-amd64/kernel/arch/x86/kernel/cpu/mce/mce-inject.ko": "mce_inject",
		"kernel/mm/hwpoison-inject.ko.xz":                                         "hwpoison_inject",
		"foo.ko.zst":                                                              "foo",
		"bar.ko.gz":                                                               "bar",
		"mce-inject":                                                              "mce_inject",
	} {
		require.Equal(t, want, moduleName(in), in)
	}
	require.True(t, isModuleFile("a/b.ko.xz"))
	require.False(t, isModuleFile("a/modules.order"))
}

func TestParseModinfoDepends(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "none", in: "license=GPL\x00depends=\x00retpoline=Y\x00", want: nil},
		{name: "two", in: "license=GPL\x00depends=edac-core,foo_bar\x00", want: []string{"edac_core", "foo_bar"}},
		{name: "absent", in: "license=GPL\x00", want: nil},
		{name: "empty section", in: "", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, parseModinfoDepends([]byte(tc.in)))
		})
	}
}

func TestLoadOrder(t *testing.T) {
	deps := moduleDeps{"a": {"b", "c"}, "b": {"c"}, "c": nil, "d": {"c"}}
	order, err := deps.loadOrder([]string{"a", "d"})
	require.NoError(t, err)
	require.Equal(t, []string{"c", "b", "a", "d"}, order)

	_, err = moduleDeps{"a": {"b"}, "b": {"a"}}.loadOrder([]string{"a"})
	require.ErrorContains(t, err, "cycle")

	_, err = moduleDeps{"a": {"missing"}}.loadOrder([]string{"a"})
	require.ErrorContains(t, err, "missing")
}

func FuzzParseModinfoDepends(f *testing.F) {
	f.Add([]byte("depends=a,b\x00"))
	f.Add([]byte("depends=,,\x00depends=x"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, d := range parseModinfoDepends(in) {
			require.NotEmpty(t, d)
		}
	})
}
