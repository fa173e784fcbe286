package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestParseSeccomp(t *testing.T) {
	p, argv, err := parseSeccomp([]string{"--allow", "0,1,60", "--families", "1,2,10", "--mdwe", "--", "selfprotect", "run"})
	require.NoError(t, err)
	require.Equal(t, seccompPolicy{allow: []uint32{0, 1, 60}, errno: uint32(unix.EPERM), families: []uint32{1, 2, 10}, mdwe: true}, p)
	require.Equal(t, []string{"selfprotect", "run"}, argv)
	_, _, err = parseSeccomp([]string{"--allow", "0,x", "--", "a"})
	require.ErrorContains(t, err, "--allow")
	_, _, err = parseSeccomp([]string{"--mdwe"})
	require.ErrorContains(t, err, "no command")
}

// seccompHelperEnv makes the test binary, re-run, install a filter on one
// thread and report what a few calls on that thread get.
const seccompHelperEnv = "GUEST_SECCOMP_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(seccompHelperEnv) == "1" {
		seccompHelper()
		return
	}
	os.Exit(m.Run())
}

func seccompHelper() {
	// Everything but sync and sethostname, so the Go runtime on this
	// thread keeps working while the filter shows it denies what is not
	// listed.
	var allow []uint32
	for nr := uint32(0); nr < 460; nr++ {
		if nr != unix.SYS_SYNC && nr != unix.SYS_SETHOSTNAME {
			allow = append(allow, nr)
		}
	}
	p := seccompPolicy{allow: allow, errno: uint32(unix.EPERM), families: []uint32{unix.AF_UNIX}, mdwe: true}
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("nnp", err)
		os.Exit(2)
	}
	if err := p.install(); err != nil {
		fmt.Println("install", err)
		os.Exit(2)
	}
	res := func(name string, err error) { fmt.Printf("%s=%v\n", name, err) }
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	res("socket-unix", err)
	unix.Close(fd)
	_, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	res("socket-inet", err)
	_, err = unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANON)
	res("mmap-wx", err)
	b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	res("mmap-w", err)
	res("mprotect-x", unix.Mprotect(b, unix.PROT_READ|unix.PROT_EXEC))
	res("mprotect-r", unix.Mprotect(b, unix.PROT_READ))
	_, _, e := unix.RawSyscall(unix.SYS_SYNC, 0, 0, 0)
	if e == 0 {
		res("sync", nil)
	} else {
		res("sync", e)
	}
	_, _, e = unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0)
	if e == 0 {
		res("getpid", nil)
	} else {
		res("getpid", e)
	}
	os.Exit(0)
}

// The compiled filter, installed for real in a child process: listed
// calls pass, an unlisted one gets the errno, socket() only for the
// allowed families, no writable executable memory.
func TestSeccompFilterInstalled(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), seccompHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	require.Equal(t, map[string]string{
		"socket-unix": "<nil>",
		"socket-inet": unix.EAFNOSUPPORT.Error(),
		"mmap-wx":     unix.EPERM.Error(),
		"mmap-w":      "<nil>",
		"mprotect-x":  unix.EPERM.Error(),
		"mprotect-r":  "<nil>",
		"sync":        unix.EPERM.Error(),
		"getpid":      "<nil>",
	}, got)
}
