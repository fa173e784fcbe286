package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/policy"
)

// The README's configuration reference is the built-in policy verbatim.
func TestREADMEPolicyReferenceIsCurrent(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "<!-- policy:begin -->\n```yaml\n")
	require.True(t, ok, "README lacks the policy:begin marker")
	block, _, ok := strings.Cut(rest, "```\n<!-- policy:end -->")
	require.True(t, ok, "README lacks the policy:end marker")
	want, err := policy.Defaults().YAML()
	require.NoError(t, err)
	require.Equal(t, string(want), block, "update the README block with `selfprotect check-config`")
}
