package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// i386GetpidCode calls getpid through the i386 ABI (int $0x80, number 20)
// and exits through the native one: status 0 when the call returned a
// PID, else the errno it returned.
var i386GetpidCode = []byte{
	0xb8, 0x14, 0x00, 0x00, 0x00, // mov $20, %eax
	0xcd, 0x80, //                   int $0x80
	0x31, 0xff, //                   xor %edi, %edi
	0x85, 0xc0, //                   test %eax, %eax
	0x79, 0x04, //                   jns exit
	0x89, 0xc7, //                   mov %eax, %edi
	0xf7, 0xdf, //                   neg %edi
	0xb8, 0x3c, 0x00, 0x00, 0x00, // exit: mov $60, %eax
	0x0f, 0x05, //                   syscall
}

// i386GetpidELF is a static x86-64 executable of one loadable segment
// running i386GetpidCode: the smallest process that can make a non-native
// system call, which the Go runtime's threads cannot do alone.
func i386GetpidELF() []byte {
	const base = 0x400000
	hdrs := uint64(binary.Size(elf.Header64{}) + binary.Size(elf.Prog64{}))
	size := hdrs + uint64(len(i386GetpidCode))
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: base + hdrs, Phoff: uint64(binary.Size(elf.Header64{})),
		Ehsize: uint16(binary.Size(elf.Header64{})), Phentsize: uint16(binary.Size(elf.Prog64{})), Phnum: 1,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	p := elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: base, Paddr: base,
		Filesz: size, Memsz: size, Align: 0x1000}
	_ = binary.Write(&b, binary.LittleEndian, h)
	_ = binary.Write(&b, binary.LittleEndian, p)
	b.Write(i386GetpidCode)
	return b.Bytes()
}

// i386Syscall runs i386GetpidELF from a temporary file: nil when the
// call went through, the errno it returned, or the signal that ended the
// process (a seccomp filter's kill is SIGSYS).
func i386Syscall() error {
	f, err := os.CreateTemp("", "sandbox-probe-i386-")
	if err != nil {
		return fmt.Errorf("creating the i386 probe: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(i386GetpidELF())
	if err := errors.Join(werr, f.Chmod(0o700), f.Close()); err != nil {
		return fmt.Errorf("writing the i386 probe: %w", err)
	}
	cmd := exec.Command(f.Name())
	cmd.WaitDelay = time.Second
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running the i386 probe: %w", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		return errors.New("the i386 probe did not exit in 10 s")
	}
	var ex *exec.ExitError
	if !errors.As(err, &ex) {
		return err
	}
	ws := ex.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return fmt.Errorf("killed by %s", unix.SignalName(ws.Signal()))
	}
	return unix.Errno(ws.ExitStatus())
}
