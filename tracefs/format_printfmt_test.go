package tracefs

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Real format files can carry a raw newline inside print fmt's C string
// (ras/aer_event on 6.1 and 6.12); every event the daemon enables must parse.
func TestParseFormatEveryCapturedEvent(t *testing.T) {
	for _, kernel := range []string{"6.1", "6.12"} {
		for _, f := range loadKernelFormats(t, kernel).All() {
			require.NotEmpty(t, f.PrintFmt, "%s %s", kernel, f.Key())
		}
		aer := loadFormat(t, kernel, "ras/aer_event")
		require.True(t, strings.HasPrefix(aer.PrintFmt, `"%s PCIe Bus Error: severity=%s, %s, TLP Header=%s`+"\n"+`", __get_str(dev_name)`), aer.PrintFmt[:80])
		require.True(t, aer.Has("tlp_header"))
	}
}
