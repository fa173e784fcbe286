package policy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAlertsSectionPassesThrough: the policy file also holds the alert
// package's section, which the policy must neither reject nor read.
func TestAlertsSectionPassesThrough(t *testing.T) {
	cfg, err := Parse("selfprotect.yaml", []byte(`mode: dry-run
alerts:
  notifiers:
    - name: mail
      type: email
      whatever: {the: policy does not look}
`))
	require.NoError(t, err)
	require.Equal(t, ModeDryRun, cfg.Mode)

	// Only at the top: a nested "alerts" key is still unknown.
	_, err = Parse("selfprotect.yaml", []byte("rules:\n  alerts: true\n"))
	require.ErrorContains(t, err, "selfprotect.yaml:2: unknown key `alerts` in rules")
}
