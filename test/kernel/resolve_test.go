package kernel

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return data
}

func TestUnsigned61FromDepends(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        error
	}{
		{name: "recorded", in: string(readFixture(t, "apt-cache-depends-linux-image-amd64.txt")), want: "linux-image-6.1.0-56-amd64-unsigned"},
		{name: "older number", in: "linux-image-amd64\n  Depends: linux-image-6.1.0-9-amd64\n", want: "linux-image-6.1.0-9-amd64-unsigned"},
		{name: "no 6.1 dependency", in: "linux-image-amd64\n  Depends: linux-image-6.12.1-amd64\n", wantErr: ErrNoKernelPackage},
		{name: "empty", in: "", wantErr: ErrNoKernelPackage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := unsigned61FromDepends([]byte(tc.in))
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestNewest612FromSearch(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        error
	}{
		{name: "recorded", in: string(readFixture(t, "apt-cache-search-6.12.txt")), want: "linux-image-6.12.117+deb12-amd64-unsigned"},
		// Patch levels compare as numbers, not strings: 9 < 48.
		{name: "numeric order", in: "linux-image-6.12.9+deb12-amd64-unsigned - x\nlinux-image-6.12.48+deb12-amd64-unsigned - x\n", want: "linux-image-6.12.48+deb12-amd64-unsigned"},
		{name: "signed only", in: "linux-image-6.12.48+deb12-amd64 - x\n", wantErr: ErrNoKernelPackage},
		{name: "empty", in: "", wantErr: ErrNoKernelPackage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newest612FromSearch([]byte(tc.in))
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestVersionFromShow(t *testing.T) {
	v, err := versionFromShow(readFixture(t, "apt-cache-show-6.12.txt"))
	require.NoError(t, err)
	require.Equal(t, "6.12.117-1~deb12u1", v)

	_, err = versionFromShow([]byte("Package: x\n"))
	require.Error(t, err)
}

func FuzzResolveParsers(f *testing.F) {
	f.Add([]byte("linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n"))
	f.Add([]byte("linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12\n"))
	f.Add([]byte("Version: 1\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if name, err := unsigned61FromDepends(in); err == nil {
			require.Regexp(t, `^linux-image-6\.1\.0-\d+-amd64-unsigned$`, name)
		}
		if name, err := newest612FromSearch(in); err == nil {
			require.Regexp(t, `^linux-image-6\.12\.\d+\+deb12-amd64-unsigned$`, name)
		}
		_, _ = versionFromShow(in)
	})
}
