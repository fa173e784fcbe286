package replay

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFloors: replay sits beside daemon/ on floor 2 and must run the same
// engine without wiring the daemon in: it imports neither daemon/ nor the
// simulator nor the CLI (architecture.md, "Floors").
func TestFloors(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	const mod = "github.com/selfprotect/selfprotect/"
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, banned := range []string{"daemon", "sim", "cmd", "test"} {
				require.False(t, path == mod+banned || strings.HasPrefix(path, mod+banned+"/"),
					"%s imports %s", f, path)
			}
		}
	}
}
