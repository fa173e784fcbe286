package pageoffline

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/kpath"
)

var testPaths = kpath.Under("/fake")

// Values captured on 6.12 (Intel model) around a real soft offline of a
// held anonymous page: see /work/shared/kernel-data/6.12-intel/proc-samples.txt.
const (
	testPFN         = 0x2a21
	flagsBefore     = 0x0000000400205828
	flagsAfter      = 0x0000000000285018
	fakeMemoryPFNs  = 0x3000 // kpageflags covers PFNs below this
	hugePFN         = 0x2000
	hugeFlags       = 1<<KPFHuge | 1<<15 // huge + head
	poisonedPFN     = 0x1000
	noPagePFN       = 0x1001
	softOfflineFile = "devices/system/memory/soft_offline_page"
	hardOfflineFile = "devices/system/memory/hard_offline_page"
)

// fakeKernel plays the memory-failure code behind a fakeFS: a successful
// write to soft/hard_offline_page poisons the page, visible after
// delayReads further kpageflags reads, and adds 4 kB to HardwareCorrupted.
type fakeKernel struct {
	t          *testing.T
	fs         *fakeFS
	ignore     bool // accept writes but never poison
	delayReads int
	pending    []uint64
	countdown  int
	corrupted  int
}

func newFakeKernel(t *testing.T) *fakeKernel {
	f := newFakeFS()
	kpf := make([]byte, fakeMemoryPFNs*8)
	binary.LittleEndian.PutUint64(kpf[testPFN*8:], flagsBefore)
	binary.LittleEndian.PutUint64(kpf[hugePFN*8:], hugeFlags)
	binary.LittleEndian.PutUint64(kpf[poisonedPFN*8:], 1<<KPFHWPoison)
	binary.LittleEndian.PutUint64(kpf[noPagePFN*8:], 1<<KPFNoPage)
	f.Files[testPaths.ProcPath("kpageflags")] = kpf
	f.Mkdir(testPaths.Proc)
	f.Set(testPaths.SysPath(softOfflineFile), "")
	f.Set(testPaths.SysPath(hardOfflineFile), "")
	k := &fakeKernel{t: t, fs: f}
	k.writeMeminfo()
	f.OnWrite = k.write
	f.OnReadAt = k.readAt
	return k
}

func (k *fakeKernel) writeMeminfo() {
	data, err := os.ReadFile(filepath.Join("testdata", "meminfo-6.12-intel.txt"))
	require.NoError(k.t, err)
	re := regexp.MustCompile(`HardwareCorrupted:\s+\d+ kB`)
	k.fs.Set(testPaths.ProcPath("meminfo"), re.ReplaceAllString(string(data), "HardwareCorrupted:     "+strconv.Itoa(k.corrupted)+" kB"))
}

func (k *fakeKernel) write(path string, data []byte) {
	if k.ignore || !strings.HasSuffix(path, "_offline_page") {
		return
	}
	addr, err := strconv.ParseUint(strings.TrimSpace(string(data)), 0, 64)
	require.NoError(k.t, err)
	require.Zero(k.t, addr&0xfff, "offline files take a page-aligned byte address")
	k.pending = append(k.pending, addr>>12)
	k.countdown = k.delayReads
	if k.countdown == 0 {
		k.apply()
	}
}

func (k *fakeKernel) readAt(path string) {
	if len(k.pending) == 0 || k.countdown == 0 {
		return
	}
	if k.countdown--; k.countdown == 0 {
		k.apply()
	}
}

func (k *fakeKernel) apply() {
	kpf := k.fs.Files[testPaths.ProcPath("kpageflags")]
	for _, pfn := range k.pending {
		if pfn < fakeMemoryPFNs {
			binary.LittleEndian.PutUint64(kpf[pfn*8:], flagsAfter)
			k.corrupted += 4
		}
	}
	k.pending = nil
	k.writeMeminfo()
}
