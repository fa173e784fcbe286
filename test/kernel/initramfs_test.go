package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInitScriptLoadsModulesInOrderAndPowersOff(t *testing.T) {
	s, err := initScript([]string{"/lib/modules/dep.ko", "/lib/modules/mce_inject.ko"}, nil, "")
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

// TestInitScriptSwitchRoot: with a root device, /init loads the modules
// (the disk's among them) before mounting it, and hands over to its
// systemd instead of running a script; a device that does not mount ends
// the run with a result saying so.
func TestInitScriptSwitchRoot(t *testing.T) {
	s, err := initScript([]string{"/lib/modules/virtio_blk.ko", "/lib/modules/ext4.ko"}, nil, "/dev/vda")
	require.NoError(t, err)
	require.NotContains(t, s, "/scenario/run.sh")
	ext4 := strings.Index(s, "insmod /lib/modules/ext4.ko")
	mount := strings.Index(s, "mount -t ext4 /dev/vda /newroot")
	move := strings.Index(s, "mount --move /sys /newroot/sys")
	exec := strings.Index(s, "exec switch_root /newroot /lib/systemd/systemd")
	require.True(t, ext4 >= 0 && mount > ext4 && move > mount && exec > move, "modules, mount, move, hand over: in that order")
	require.Contains(t, s, "result switch-root false", "a failed mount is reported")
	require.Contains(t, busyboxApplets, "switch_root")
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
