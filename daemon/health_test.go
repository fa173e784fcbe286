package daemon

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// The health check's "isolated by us" comes from memory: with the store
// closed it still answers, and the kernel's or another actor's isolations
// are not ours.
func TestIsolatedByUsReadsMemory(t *testing.T) {
	d := quietDaemon(t)
	require.NoError(t, d.store.Close())
	d.mu.Lock()
	for _, r := range []fault.Resource{fault.Page(0x10), fault.CPU(2), fault.Page(0x30)} {
		d.isolated[r] = true
	}
	d.byOther[fault.Page(0x30)] = true
	d.mu.Unlock()
	require.Equal(t, []fault.Resource{fault.CPU(2), fault.Page(0x10)}, d.isolatedByUs())
}
