package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInitScriptLoadsModulesInOrderAndPowersOff(t *testing.T) {
	s, err := initScript([]string{"/lib/modules/dep.ko", "/lib/modules/mce_inject.ko"}, nil)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(s, "#!/bin/sh\n"))
	for _, want := range []string{
		"mount -t debugfs debugfs /sys/kernel/debug",
		"mount -t tracefs tracefs /sys/kernel/tracing",
		"@@BOOTED",
		"sh /scenario/run.sh",
		"@@DONE",
	} {
		require.Contains(t, s, want)
	}
	dep := strings.Index(s, "insmod /lib/modules/dep.ko")
	mce := strings.Index(s, "insmod /lib/modules/mce_inject.ko")
	require.True(t, dep >= 0 && mce > dep, "dependency loads first")
	require.True(t, strings.HasSuffix(s, "poweroff -f\n"))
}

func TestBuildInitramfsRefusesDynamicBinaries(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "guest")
	require.NoError(t, os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755))
	k := &Kernel{Vmlinuz: filepath.Join(dir, "vmlinuz")}
	err := BuildInitramfs(Payload{Kernel: k, Busybox: notELF, Guest: notELF}, Scenario{Name: "x"}, filepath.Join(dir, "initrd"))
	require.ErrorContains(t, err, "not a static executable")
}

func TestBuildInitramfsMissingFile(t *testing.T) {
	dir := t.TempDir()
	err := BuildInitramfs(Payload{Kernel: &Kernel{}, Busybox: filepath.Join(dir, "nope"), Guest: filepath.Join(dir, "nope")}, Scenario{}, filepath.Join(dir, "initrd"))
	require.ErrorContains(t, err, "nope")
}
