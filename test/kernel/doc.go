// Package kernel is the real-kernel test suite (issue 3): it fetches Debian
// kernels, packs an initramfs holding busybox, the selfprotect daemon and a
// small guest helper, boots each kernel under QEMU's software emulation and
// reads the guest's machine-readable result lines off the serial console.
//
// Nothing here boots a VM unless SELFPROTECT_KERNEL=1 (see kernel_test.go);
// plain `go test ./...` only runs the harness's own unit tests.
package kernel
